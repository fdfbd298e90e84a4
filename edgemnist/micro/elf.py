"""Flash and RAM of a Cortex-M firmware ELF, with the tensor arena, stack, model and test digits named.

Usage: from edgemnist.micro import elf; elf.elf_sizes(Path("build/cortex-m4-cmsis_nn/firmware.elf"), "mnist", build.find_tools())

Reads the section table (`arm-none-eabi-size -A`) and the symbol sizes (`arm-none-eabi-nm -S`);
the address that splits flash from RAM is the one `templates/cortex_m/cortex_m.ld` uses.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

RAM_START = 0x20000000  # cortex_m/cortex_m.ld: FLASH below, RAM from here

_NOT_LOADED = (".debug", ".comment", ".ARM.attributes", ".stab", ".note")


def elf_sizes(elf: Path, stem: str, tools: dict) -> dict:
    """Flash (everything loaded from flash, .data's initial values included) and RAM (.data,
    .bss, heap and stack) of the ELF, with the arena, stack, model and test digits named.

    Args:
        elf: the linked firmware.
        stem: the <stem> of the folder's C names (g_<stem>_model_data, ...).
        tools: {"size", "nm"} -> program (`build.find_tools()`).

    Returns:
        {"flash_bytes", "ram_bytes", "sections", "arena_bytes", "stack_bytes", "model_bytes",
        "test_digit_bytes"}.
    """
    out = subprocess.run([tools["size"], "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() \
                and not parts[0].startswith(_NOT_LOADED):
            sections[parts[0]] = (int(parts[1]), int(parts[2]))
    flash = sum(size for size, addr in sections.values() if addr < RAM_START)
    ram = sum(size for size, addr in sections.values() if addr >= RAM_START)
    flash += sections.get(".data", (0, 0))[0]  # initial values live in flash
    symbols = {}
    nm = subprocess.run([tools["nm"], "-S", "-C", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            symbols[" ".join(parts[3:])] = int(parts[1], 16)
    # TFLite Micro's arena (`tensor_arena` in the firmware's main), or the generated C's static one
    # (`em_arena`, which the compiler may give a suffix such as `.lto_priv.0`)
    arena = next((size for name, size in symbols.items()
                  if name.endswith("tensor_arena") or name.split(".")[0] == "em_arena"), None)
    return {
        "flash_bytes": flash,
        "ram_bytes": ram,
        "sections": {name: size for name, (size, _) in sorted(sections.items()) if size},
        "arena_bytes": arena,
        "stack_bytes": sections.get(".stack", (None, 0))[0],
        "model_bytes": symbols.get(f"g_{stem}_model_data"),
        "test_digit_bytes": sum(v for k, v in symbols.items()
                                if k in (f"g_{stem}_test_digits", f"g_{stem}_test_labels", f"g_{stem}_expected_scores")),
    }
