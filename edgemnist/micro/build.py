"""Cross-compile a firmware folder for a Cortex-M core: find the tools and the TFLite Micro tree, run its Makefile.

Usage: from edgemnist.micro import build; build.build(folder, build.resolve_tflm(None, "cmsis_nn"), "cortex-m4", "cmsis_nn", tools=build.find_tools())

The folder's `Makefile` (rendered from `templates/cortex_m/Makefile`) knows the compiler
flags per core; this module only finds what it needs (arm-none-eabi-gcc, make, QEMU, a
TFLite Micro tree made by `create_tflm_tree.py`), picks the shared object cache and runs
`make`, keeping its log.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from edgemnist.artifacts import cache_dir as default_cache_dir

TFLM_ENV = "EDGEMNIST_TFLM"  # default for --tflm

INSTALL_HINT = ("apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
                "qemu-system-arm make")
TREE_HINT = ("make one in a tflite-micro checkout with: python3 tensorflow/lite/micro/tools/project_generation/"
             "create_tflm_tree.py --makefile_options=\"TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp "
             "[OPTIMIZED_KERNEL_DIR=cmsis_nn]\" OUT")


class MissingToolError(FileNotFoundError):
    """A tool or source tree the build needs is not there (exit status 2)."""


class FirmwareRunError(RuntimeError):
    """The build failed, or the firmware hung or faulted under QEMU (exit status 1)."""


def find_tools() -> dict:
    """Paths of the cross compiler, binutils, make and QEMU.

    Returns:
        {"make", "gcc", "g++", "size", "nm", "qemu"} -> absolute path.

    Raises:
        MissingToolError: one is missing (the message says what to install).
    """
    names = {"make": "make", "gcc": "arm-none-eabi-gcc", "g++": "arm-none-eabi-g++",
             "size": "arm-none-eabi-size", "nm": "arm-none-eabi-nm", "qemu": "qemu-system-arm"}
    found = {key: shutil.which(name) for key, name in names.items()}
    missing = [names[key] for key, path in found.items() if path is None]
    if missing:
        raise MissingToolError(f"{', '.join(missing)} not found; install them with: {INSTALL_HINT}")
    return found


def resolve_tflm(tflm: Optional[str], kernels: str) -> Path:
    """The TFLite Micro tree for a kernel set: `tflm` itself, or its `tree_<kernels>/` folder.

    Args:
        tflm: a create_tflm_tree.py tree, a folder holding tree_<kernels>/, or None for $EDGEMNIST_TFLM.
        kernels: "reference" or "cmsis_nn".

    Raises:
        MissingToolError: no tree given or found, or the tree lacks that kernel set.
    """
    given = tflm or os.environ.get(TFLM_ENV)
    if not given:
        raise MissingToolError(f"no TFLite Micro tree: pass --tflm DIR or set {TFLM_ENV}; {TREE_HINT}")
    root = Path(given).expanduser()
    for tree in (root, root / f"tree_{kernels}"):
        if (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
            break
    else:
        raise MissingToolError(f"{root}: not a TFLite Micro tree (no tensorflow/lite/micro/micro_interpreter.h, "
                               f"nor in tree_{kernels}/); {TREE_HINT}")
    kernel_dir = tree / "tensorflow" / "lite" / "micro" / "kernels"
    has_cmsis = (kernel_dir / "cmsis_nn").is_dir()
    if kernels == "cmsis_nn" and not has_cmsis:
        raise MissingToolError(f"{tree}: this TFLite Micro tree has no CMSIS-NN kernels "
                               "(make it with OPTIMIZED_KERNEL_DIR=cmsis_nn)")
    if kernels == "reference" and has_cmsis:
        raise MissingToolError(f"{tree}: this TFLite Micro tree was made with OPTIMIZED_KERNEL_DIR=cmsis_nn; "
                               "reference kernels need a tree made without it")
    return tree


def _cache_root(cache_dir: Optional[str]) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir()


BUILD_TYPES = ("check", "release")  # the Makefile's BUILD_TYPE: the checking build, the lean one a product ships


def object_cache(cache_dir: Optional[str], tree: Path, cpu: str, kernels: str, makefile: bytes,
                 build_type: str = "check") -> Path:
    """The folder for TFLite Micro objects: one per tree, core, kernel set, build type and Makefile (its flags)."""
    key = hashlib.sha256("\0".join([str(tree.resolve()), cpu, kernels]).encode() + makefile)
    suffix = "" if build_type == "check" else f"-{build_type}"  # the checking build's folders keep their names
    return _cache_root(cache_dir) / "tflm-objects" / f"{cpu}-{kernels}{suffix}-{key.hexdigest()[:16]}"


@contextlib.contextmanager
def cache_lock(cache: Path):
    """Holds an exclusive lock on an object cache while make fills it. Two builds that share a cache (two
    `edgemnist mcu` runs, parallel test workers) would otherwise both compile every missing object (the
    Makefile renames each into place, so neither breaks, but the work is done twice); with the lock the second
    waits and finds them made. The lock is a file beside the cache, released when the build ends or its
    process dies. Where the platform has no fcntl, builds are not serialized."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    with open(cache.with_name(cache.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_folder(folder: Path, cpu: str, kernels: str, build_dir: Optional[str] = None,
                 build_type: str = "check") -> Path:
    """Where a folder's build goes: `build_dir`, else <folder>/build/<cpu>-<kernels>[-release]."""
    suffix = "" if build_type == "check" else f"-{build_type}"
    return Path(build_dir) if build_dir else Path(folder) / "build" / f"{cpu}-{kernels}{suffix}"


def build(folder: Path, tree: Optional[Path], cpu: str, kernels: str, tools: dict, jobs: int = 1,
          build_dir: Optional[str] = None, cache_dir: Optional[str] = None, build_type: str = "check",
          make_vars: Optional[dict] = None, goal: str = "all") -> dict:
    """Runs the folder's Makefile (target `all`: the firmware; `tflm`: only the TFLite Micro objects, into the cache).

    Args:
        folder: a firmware folder (its files already checked against its manifest).
        tree: the TFLite Micro tree (`resolve_tflm`); None for a folder that builds without TFLite
            Micro (the generated C runtime): no TFLM, KERNELS or OBJ_CACHE is passed to make.
        cpu: the core, as the Makefile's CPU names it.
        kernels: "reference" or "cmsis_nn" (for the C runtime: "c", which only names the build folder).
        tools: `find_tools()`.
        jobs: parallel compiler processes.
        build_dir: the build folder (default <folder>/build/<cpu>-<kernels>).
        cache_dir: compiled TFLite Micro objects, shared by folders (default `artifacts.cache_dir()`).
        build_type: one of BUILD_TYPES.
        make_vars: more Makefile variables (BOARD, RAM_SIZE, STACK_SIZE, ...).
        goal: "all" or "tflm" (needs a tree; no ELF is made).

    Returns:
        {"elf" (None for goal "tflm"), "build_dir", "seconds", "log", "object_cache" (None without a tree)}.

    Raises:
        FirmwareRunError: the compiler or linker failed (the log's tail in the message).
    """
    folder = Path(folder)
    if build_type not in BUILD_TYPES:
        raise ValueError(f"build_type must be one of {', '.join(BUILD_TYPES)}, got {build_type!r}")
    if goal not in ("all", "tflm") or (goal == "tflm" and tree is None):
        raise ValueError(f"goal must be 'all' or (with a TFLite Micro tree) 'tflm', got {goal!r}")
    out = build_folder(folder, cpu, kernels, build_dir, build_type)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "build.log"
    if tree is None:
        cmd = [tools["make"], "-C", str(folder), f"-j{int(jobs)}", f"CPU={cpu}", f"BUILD={out.resolve()}",
               f"BUILD_TYPE={build_type}"]
    else:
        cache = object_cache(cache_dir, tree, cpu, kernels, (folder / "Makefile").read_bytes(), build_type)
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [tools["make"], "-C", str(folder), f"-j{int(jobs)}", f"TFLM={tree.resolve()}", f"CPU={cpu}",
               f"KERNELS={kernels}", f"BUILD={out.resolve()}", f"OBJ_CACHE={cache}", f"BUILD_TYPE={build_type}"]
    cmd += [f"{name}={value}" for name, value in sorted((make_vars or {}).items())] + [goal]
    with open(log, "w", encoding="utf-8") as fh, (cache_lock(cache) if tree is not None else contextlib.nullcontext()):
        start = time.perf_counter()  # after the lock: the build's own time, not another's
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    elf = out / "firmware.elf" if goal == "all" else None
    if result.returncode != 0 or (elf is not None and not elf.is_file()):
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise FirmwareRunError(f"building {folder} for {cpu} ({kernels}) failed: "
                               f"{' | '.join(tail)[-600:]} (full log: {log})")
    return {"elf": elf, "build_dir": out, "seconds": round(seconds, 2), "log": str(log),
            "object_cache": str(cache) if tree is not None else None}
