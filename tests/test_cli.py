"""The command line as a user starts it."""
import subprocess
import sys


def test_python_m_edgemnist_runs_the_cli():
    run = subprocess.run([sys.executable, "-m", "edgemnist", "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("edgemnist ")
    run = subprocess.run([sys.executable, "-m", "edgemnist", "mcu", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--kernels" in run.stdout
