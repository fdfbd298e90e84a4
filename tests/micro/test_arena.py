"""edgemnist.micro.arena: the smallest tensor arena on TFLite Micro, found by probes in child processes."""
from __future__ import annotations

import subprocess

import pytest

from edgemnist.micro import arena as micro_arena
from edgemnist.runtime.preflight import module_command


@pytest.fixture(scope="module")
def int8_path(micro_firmware):
    return micro_firmware["model"]


@pytest.fixture(scope="module")
def arena(micro_firmware):
    """What `measure_arena` found for the session's firmware folder (its manifest's record)."""
    return micro_arena.ArenaSize(**micro_firmware["manifest"]["arena"])


def _probe_program(*argv) -> subprocess.CompletedProcess:
    command, env = module_command("edgemnist.micro.arena", *map(str, argv))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_stated_arena_works_and_ten_percent_below_minimum_does_not(arena, int8_path):
    print(f"arena: measured minimum {arena.minimum} bytes, stated {arena.stated} bytes")
    assert arena.minimum % micro_arena.ARENA_ALIGNMENT == 0 and arena.stated % 1024 == 0
    assert arena.minimum <= arena.stated <= arena.minimum * (1 + arena.margin) + 1024
    assert arena.recorded is not None and arena.recorded <= arena.stated and arena.probes > 3
    assert micro_arena.arena_works(int8_path, arena.stated)
    assert micro_arena.arena_works(int8_path, arena.minimum)
    assert not micro_arena.arena_works(int8_path, arena.minimum - micro_arena.ARENA_ALIGNMENT)
    assert not micro_arena.arena_works(int8_path, int(arena.minimum * 0.9))
    assert not micro_arena.arena_works(int8_path, 64)  # crashes TFLite Micro; the child process takes it


def test_probe_program_says_ok_and_reports_the_allocation(arena, int8_path):
    run = _probe_program(int8_path, arena.stated, "--record")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == micro_arena.OK_MARKER and "Arena allocation total" in run.stdout + run.stderr
    too_small = _probe_program(int8_path, 1024)
    assert micro_arena.OK_MARKER not in too_small.stdout and too_small.returncode != 0
    assert _probe_program(int8_path).returncode == 2  # no arena size: usage


def test_a_model_that_never_fits_is_a_value_error(int8_path):
    with pytest.raises(ValueError, match="does not run on TFLite Micro with a 2048-byte arena"):
        micro_arena.measure_arena(int8_path, max_arena=2048)
    assert micro_arena.ArenaSize(1, 2, 0.1, None, 3).to_json() == {
        "minimum": 1, "stated": 2, "margin": 0.1, "recorded": None, "probes": 3, "measured_on": "host"}


def test_an_arena_measured_on_the_core_is_stated_to_its_alignment_not_a_kib():
    core = micro_arena.on_core(5_588, 0.0, "cortex-m3 (cmsis_nn kernels, QEMU mps2-an385)")
    assert (core.minimum, core.stated, core.recorded, core.probes) == (5_588, 5_600, 5_588, 0)
    assert core.measured_on.startswith("cortex-m3") and core.rounding == micro_arena.ARENA_ALIGNMENT
    assert micro_arena.on_core(5_600, 0.0, "m3").stated == 5_600  # already aligned
    assert micro_arena.on_core(5_588, 0.1, "m3").stated == 6_160  # 6,146.8 up to 16
    with pytest.raises(ValueError, match="reported 0 bytes"):
        micro_arena.on_core(0, 0.0, "m3")
    with pytest.raises(ValueError, match="margin"):
        micro_arena.on_core(5_588, -1, "m3")
