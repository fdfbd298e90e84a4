"""Named deployment targets: a core, its QEMU board, a kernel set, a flash and RAM budget, a model preset.

Usage: edgemnist targets [--json]      (then: edgemnist pipeline --target microbit --out runs/microbit)

A user names the device; every command that needs to know it takes `--target NAME` and reads
it from here: `train` and `pipeline` the model preset (chosen by measuring candidates on the
emulated cores, docs/experiments.md), `firmware` and `mcu` the core, the QEMU board, the
kernel set and the budget. The budget is the whole release firmware (framework, kernels,
model, start-up code; arena, stack and TFLite Micro's own allocations); a model whose
arena and stack alone exceed the RAM, or whose model alone exceeds the flash, is refused
before anything is built. What does fit is proven by linking the release build against the
board's real memory map and running it under QEMU's model of that board.

This module is the one owner of the names, budgets and presets. The firmware folder's
Makefile owns what a board means to the compiler and to QEMU (flags, linker script, QEMU
machine); `tests/micro/test_targets.py` checks that the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from edgemnist.output import Output

KIB = 1024
# The stated tensor arena's margin over the minimum measured on the host (edgemnist.micro.arena): room
# for a kernel set whose scratch buffers differ from the host's (a board's QEMU run proves the stated size).
DEFAULT_MARGIN = 0.10


def check_margin(margin: float, where: str = "arena_margin") -> float:
    """`margin` as a float, or ValueError when it is outside [0, 4] (`where` names the setting)."""
    if not 0.0 <= float(margin) <= 4.0:
        raise ValueError(f"{where} must be in [0, 4], got {margin}")
    return float(margin)


RUNTIMES = ("tflm", "c")


@dataclass(frozen=True)
class Target:
    """One named deployment target."""

    name: str  # what users type: --target NAME
    description: str  # one line: the device
    cpu: Optional[str] = None  # the Makefile's CPU (None: not a microcontroller)
    board: Optional[str] = None  # the Makefile's BOARD: memory map, linker script and QEMU machine
    qemu_machine: Optional[str] = None  # qemu-system-arm -M (the board's, as the Makefile runs it)
    kernels: Optional[str] = None  # TFLite Micro kernel set ("cmsis_nn" or "reference"); None for runtime "c"
    flash_bytes: Optional[int] = None  # budget: the whole release firmware, without the test digits
    ram_bytes: Optional[int] = None  # budget: .data + .bss (arena, TFLM's own state) + stack
    stack_bytes: Optional[int] = None  # the release build's stack (measured high-water mark plus a margin)
    preset: dict = field(default_factory=dict)  # ModelConfig settings (empty: edgemnist's default model)
    why: str = ""  # why this preset: the measurement that chose it (docs/experiments.md)
    # The board of the checking build (semihosting, printf, the per-op profiler: more RAM than a
    # product needs) when the target's own board is too small for it: a board with the same core.
    check_board: Optional[str] = None
    # The stated tensor arena's margin over the minimum measured on the host (edgemnist firmware).
    arena_margin: float = DEFAULT_MARGIN
    # Measure the arena on the target's core (the checking build run under QEMU on check_board)
    # instead of on the 64-bit host: the host's TFLite Micro has larger structures (64-bit), which
    # would refuse a model that fits a tight board, and reference kernels, whose scratch buffers
    # are not the target's (CMSIS-NN's Helium kernels need kilobytes more than a margin covers).
    arena_on_core: bool = False
    # What runs the model on the device: "tflm" (TensorFlow Lite Micro's interpreter) or "c"
    # (edgemnist codegen's generated C: no interpreter, the only choice where TFLite Micro cannot go).
    runtime: str = "tflm"
    # The preset with the generated C runtime where its smaller RAM lets a larger model fit the same
    # board (None: the same preset as with TFLite Micro).
    c_preset: Optional[dict] = None
    c_why: str = ""

    def __post_init__(self):
        micro = (self.cpu, self.board, self.qemu_machine, self.flash_bytes, self.ram_bytes, self.stack_bytes)
        if any(v is None for v in micro) and any(v is not None for v in micro):
            raise ValueError(f"target {self.name!r}: cpu, board, qemu_machine, flash_bytes, ram_bytes "
                             f"and stack_bytes go together (got {micro})")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"target {self.name!r}: runtime must be one of {', '.join(RUNTIMES)}")
        if self.cpu is not None and (self.kernels is None) != (self.runtime == "c"):
            raise ValueError(f"target {self.name!r}: a TFLite Micro target names its kernel set; a C-runtime "
                             "target none")
        check_margin(self.arena_margin, f"target {self.name!r}: arena_margin")
        if self.ram_bytes is not None and not 0 < self.stack_bytes < self.ram_bytes:
            raise ValueError(f"target {self.name!r}: stack_bytes {self.stack_bytes} must be in "
                             f"(0, ram_bytes {self.ram_bytes})")

    @property
    def is_micro(self) -> bool:
        """True for a microcontroller target (it has a core and a budget)."""
        return self.cpu is not None

    def to_json(self) -> dict:
        """The target as JSON (the keys of `edgemnist targets --json`)."""
        return {"name": self.name, "description": self.description, "cpu": self.cpu, "board": self.board,
                "qemu_machine": self.qemu_machine, "kernels": self.kernels, "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes, "stack_bytes": self.stack_bytes, "preset": dict(self.preset),
                "why": self.why, "check_board": self.check_board or self.board, "arena_margin": self.arena_margin,
                "arena_on_core": self.arena_on_core, "runtime": self.runtime,
                "c_preset": dict(self.c_preset) if self.c_preset is not None else None, "c_why": self.c_why}

    def preset_for(self, runtime: str) -> dict:
        """The model preset with a runtime: the C runtime's own where the target has one."""
        if runtime == "c" and self.c_preset is not None:
            return dict(self.c_preset)
        return dict(self.preset)


# The Cortex-M4-class preset: every op on a CMSIS-NN fast path (dilation 1 everywhere, 3x3
# depthwise kernels, max-pool), the 28x28 image convolved once by a stride-2 stem, and the wide
# layers at 7x7 and 3x3. The 14x14 layers (the stem and block 1's depthwise convolution) cost the
# most per channel on CMSIS-NN, and a 1x1 convolution over few channels costs the most per
# multiply-accumulate, so block 1 pools before its pointwise convolution. The classifier is a
# convolution over the whole 3x3 map: no FULLY_CONNECTED kernel in the firmware, whose flash
# goes to the model instead. Filled in from the measurements in docs/experiments.md ("A model
# for every microcontroller budget").
_M4_PRESET = {"stem": "conv", "stem_kernel": 3, "stem_channels": 16, "block_channels": (48, 64, 64),
              "dilation_rates": (1, 1, 1), "pool_after": (2,), "pool_before_pointwise": (1,),
              "global_pool": "flatten", "classifier": "conv"}
_M4_WHY = "measured on QEMU mps2-an386 with CMSIS-NN: docs/experiments.md"
_M4_BUDGET = dict(kernels="cmsis_nn", flash_bytes=64 * KIB, ram_bytes=24 * KIB, stack_bytes=2 * KIB,
                  arena_on_core=True)
# The small boards: the activations sized to the RAM (the largest two live tensors plus
# TFLite Micro's own allocations must fit beside a 1-2 KB stack).
# No margin over the arena measured on the host where RAM is tight: the host is 64-bit, so
# TFLite Micro's own structures there (pointers in every tensor and node) are larger than on a
# 32-bit core, and the board's QEMU run proves the stated arena.
_TIGHT_ARENA_MARGIN = 0.0
# The classifier sees the whole 3x3 map ("flatten"): more accurate than its average for flash
# only (docs/experiments.md).
_MICROBIT_PRESET = {"stem": "conv", "stem_kernel": 3, "stem_channels": 12, "block_channels": (16, 64, 128),
                    "dilation_rates": (1, 1, 1), "pool_after": (1, 2), "global_pool": "flatten"}
# 8 KB: no block at 14x14 (the stem's output is pooled to 7x7 at once; a 5x5 stem sees more
# before it), and two narrow blocks at 7x7, since every conv channel also costs TFLite Micro
# 8 bytes of arena for its requantization; the capacity is in the classifier instead, which sees
# the whole 7x7 map ("flatten"): its weights are in flash, of which this board has plenty.
_STM32_PRESET = {"stem": "conv", "stem_kernel": 5, "stem_channels": 12, "block_channels": (24, 40),
                 "dilation_rates": (1, 1), "pool_after": (0,), "global_pool": "flatten"}

TARGETS = {
    t.name: t for t in (
        Target("default", "desktop x86-64 or a Raspberry Pi-class board: edgemnist's default model"),
        Target("cortex-m4", "Cortex-M4F class (QEMU mps2-an386), CMSIS-NN: <= 64 KB flash, <= 24 KB RAM",
               cpu="cortex-m4", board="mps2-an386", qemu_machine="mps2-an386", preset=_M4_PRESET, why=_M4_WHY,
               **_M4_BUDGET),
        Target("cortex-m7", "Cortex-M7 class (QEMU mps2-an500), CMSIS-NN: the cortex-m4 budget and preset",
               cpu="cortex-m7", board="mps2-an500", qemu_machine="mps2-an500", preset=_M4_PRESET, why=_M4_WHY,
               **_M4_BUDGET),
        Target("cortex-m55", "Cortex-M55 with Helium (QEMU mps3-an547), CMSIS-NN: the cortex-m4 budget and preset",
               cpu="cortex-m55", board="mps3-an547", qemu_machine="mps3-an547", preset=_M4_PRESET, why=_M4_WHY,
               **_M4_BUDGET),
        Target("microbit", "BBC micro:bit v1 (nRF51822, Cortex-M0, 256 KB flash, 16 KB RAM; QEMU microbit)",
               cpu="cortex-m0", board="microbit", qemu_machine="microbit", kernels="cmsis_nn",
               flash_bytes=256 * KIB, ram_bytes=16 * KIB, stack_bytes=2 * KIB, preset=_MICROBIT_PRESET,
               why="sized to 16 KB of RAM: docs/experiments.md", arena_margin=_TIGHT_ARENA_MARGIN),
        Target("stm32vldiscovery", "STM32VLDISCOVERY (STM32F100RB, Cortex-M3, 128 KB flash, 8 KB RAM; "
               "QEMU stm32vldiscovery)",
               cpu="cortex-m3", board="stm32vldiscovery", qemu_machine="stm32vldiscovery", kernels="cmsis_nn",
               flash_bytes=128 * KIB, ram_bytes=8 * KIB, stack_bytes=1536, preset=_STM32_PRESET,
               why="sized to 8 KB of RAM: docs/experiments.md", check_board="mps2-an385",
               arena_margin=_TIGHT_ARENA_MARGIN, arena_on_core=True, c_preset=_M4_PRESET,
               c_why="with generated C the cortex-m4 preset's plan fits 8 KB: benchmarks/bench_codegen_presets.py"),
        # 2 KB of RAM holds the digit (784 B, in the arena), the activations and the stack: the 8 KB
        # preset's plan is the largest of the presets that leaves room for a stack
        # (benchmarks/bench_codegen_presets.py); its weights are in flash.
        Target("uno", "Arduino Uno (ATmega328P, 8-bit AVR, 16 MHz, 32 KB flash, 2 KB RAM; simavr and QEMU uno), "
               "generated C", cpu="atmega328p", board="uno", qemu_machine="uno", flash_bytes=32256, ram_bytes=2 * KIB,
               stack_bytes=384, preset=_STM32_PRESET, runtime="c",
               why="the presets' generated-C plans against 2 KB: benchmarks/bench_codegen_presets.py"),
    )
}
# The targets TFLite Micro runs on (edgemnist firmware / mcu --target); C_TARGETS run generated C only.
MICRO_TARGETS = tuple(name for name, t in TARGETS.items() if t.is_micro and t.runtime == "tflm")
C_TARGETS = tuple(name for name, t in TARGETS.items() if t.is_micro and t.runtime == "c")


def get_target(name: str) -> Target:
    """The target called `name`.

    Raises:
        ValueError: no such target (the message lists them).
    """
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)} (edgemnist targets)")
    return TARGETS[name]


def get_micro_target(name: str) -> Target:
    """The microcontroller target called `name`.

    Raises:
        ValueError: no such target, or it is not a microcontroller (no core, no budget).
    """
    return as_micro_target(get_target(name))


def as_micro_target(target) -> Target:
    """A microcontroller target TensorFlow Lite Micro runs on, from the Target or its name: what the
    firmware and mcu configs hold (they take either, so a name is looked up once, where the config is made).

    Raises:
        ValueError: no such target, or it is not a microcontroller, or it runs generated C only.
    """
    if isinstance(target, str):
        target = get_target(target)
    if not isinstance(target, Target):
        raise TypeError(f"a target is a Target or its name, got {type(target).__name__}")
    name = target.name
    if not target.is_micro:
        raise ValueError(f"target {name!r} is not a microcontroller; choose one of {', '.join(MICRO_TARGETS)}")
    if target.runtime != "tflm":
        raise ValueError(f"target {name!r} runs edgemnist's generated C, not TensorFlow Lite Micro (which does not "
                         f"run there): edgemnist pipeline --target {name}")
    return target


def fit_problems(target: Target, model_bytes: int, arena_bytes: int) -> list:
    """What cannot fit the target before anything is built: the model against the flash, the
    tensor arena plus the stack against the RAM. Framework code and TFLite Micro's own state come
    on top, so an empty list means "may fit": the linked release build, run on the board's
    QEMU model, decides.

    Args:
        target: a microcontroller target.
        model_bytes: the .tflite model's size.
        arena_bytes: the tensor arena the firmware folder states.

    Returns:
        One line per problem, with the numbers.
    """
    problems = []
    if model_bytes > target.flash_bytes:
        problems.append(f"the model alone is {model_bytes:,} B; {target.name} has {target.flash_bytes:,} B of flash")
    if arena_bytes + target.stack_bytes > target.ram_bytes:
        problems.append(f"tensor arena {arena_bytes:,} B + stack {target.stack_bytes:,} B = "
                        f"{arena_bytes + target.stack_bytes:,} B; {target.name} has {target.ram_bytes:,} B of RAM")
    return problems


def format_targets(targets: list) -> str:
    """A human table of targets (their JSON)."""
    lines = [f"{'target':<18}{'core':<12}{'QEMU board':<18}{'runtime':<14}{'flash':>9}{'RAM':>8}  model preset"]
    for t in targets:
        preset = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                           for k, v in t["preset"].items()) or "edgemnist's default model"
        ram = f"{t['ram_bytes'] // KIB} KB" if t["ram_bytes"] else "-"
        runtime = "-" if not t["cpu"] else (f"tflm/{t['kernels']}" if t["runtime"] == "tflm" else "generated C")
        flash = f"{t['flash_bytes'] / KIB:.1f} KB".replace(".0 KB", " KB") if t["flash_bytes"] else "-"
        lines.append(f"{t['name']:<18}{t['cpu'] or '-':<12}{t['qemu_machine'] or '-':<18}{runtime:<14}"
                     f"{flash:>9}{ram:>8}  {preset}")
    lines.append("budgets: the whole release firmware (flash without the test digits; RAM with arena, stack "
                 "and TFLite Micro's state)")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist targets`."""
    p = subparsers.add_parser(
        "targets",
        help="list the named deployment targets (--target NAME): core, QEMU board, kernels, budget, model preset",
        description="List the targets that train, pipeline, firmware and mcu accept with --target NAME: each "
        "fixes a core, its QEMU board, a TFLite Micro kernel set, a flash and RAM budget for the whole release "
        "firmware, and a model preset chosen for it by measurement.",
    )
    p.set_defaults(func=_run_targets)


def _run_targets(args):
    data = [t.to_json() for t in TARGETS.values()]
    return Output(data, format_targets(data))
