"""The `edgemnist` command line: one sub-command per pipeline stage.

Usage: edgemnist --help    edgemnist COMMAND --help

Each stage module registers its own sub-commands with `add_commands(subparsers)` and
imports TensorFlow only inside the handlers, so `--help` is instant and the device
commands (eval, bench, info on a .tflite) run where TensorFlow is not installed.

Exit status: 0 success, 2 bad input or usage (one clear line on stderr), 1 a real
failure (also one line; set EDGEMNIST_DEBUG=1 for the traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from edgemnist import __version__, console
from edgemnist._tensorflow import MissingExtraError
from edgemnist.artifacts import OutputError
from edgemnist.output import Output, print_json

# Stage modules that contribute sub-commands, in the order --help lists them.
COMMAND_MODULES = (
    "edgemnist.data.download",
    "edgemnist.training.train",
    "edgemnist.training.finetune",
    "edgemnist.training.optimize",
    "edgemnist.training.gate",
    "edgemnist.export.convert",
    "edgemnist.export.diagnose",
    "edgemnist.measure.eval",
    "edgemnist.measure.bench",
    "edgemnist.measure.compare",
    "edgemnist.predict",
    "edgemnist.serve",
    "edgemnist.micro.firmware",
    "edgemnist.micro.mcu",
    "edgemnist.micro.codegen",
    "edgemnist.micro.avr",
    "edgemnist.targets",
    "edgemnist.pipeline",
    "edgemnist.verify",
    "edgemnist.info",
)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Every command takes --json; cli prints the handler's Output accordingly. A command with
    actions of its own (`data check`, `data download`) gets it on each action, where it is typed."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if actions:
        for action_parser in actions[0].choices.values():
            _add_json_flag(action_parser)
        return
    if not any("--json" in action.option_strings for action in parser._actions):
        parser.add_argument("--json", action="store_true",
                            help="print the result as one JSON object instead of the table (keys: docs/outputs.md)")


def _import_stage(name: str):
    """The stage module `name`, or None where this install leaves it out (a device gets only
    the TensorFlow-free part: `bench --remote` ships runtime/ and measure/)."""
    relative = Path(*name.split(".")[1:])
    package = Path(__file__).resolve().parent
    if not (package / relative.with_suffix(".py")).is_file():
        return None
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgemnist",
        description="Train, prune, quantize, export and measure a small depthwise-separable CNN "
        "for MNIST, from desktop to Raspberry Pi to microcontroller.",
        epilog="Read a digit now: edgemnist predict photo.jpg (the int8 model shipped with edgemnist is the "
        "default model; edgemnist info lists the shipped models). Main job: edgemnist pipeline --out "
        "runs/default. Every command takes --help.",
    )
    parser.add_argument("--version", action="version", version=f"edgemnist {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="let TensorFlow, the TFLite converter, AI Edge Quantizer and LiteRT print their own "
                        "output (by default it goes to a log: <out>/logs/<command>.log, shown if the command fails)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = _import_stage(name)
        if module is not None:
            module.add_commands(subparsers)
    for command_parser in subparsers.choices.values():
        _add_json_flag(command_parser)
    return parser


# Commands whose --out folder keeps the native-output log (logs/<command>.log); the others
# log to a temporary file that is kept, and named, only when the command fails. `firmware`
# is not listed: its folder is an artifact checked file by file against its manifest.
LOG_IN_OUT = ("train", "finetune", "optimize", "export", "compare", "pipeline")


def _native_log(args) -> tuple[Path, bool]:
    """(where the command's native output goes, whether the file is temporary)."""
    out = getattr(args, "out", None)
    if args.command in LOG_IN_OUT and out:
        return Path(out) / "logs" / f"{args.command}.log", False
    handle, path = tempfile.mkstemp(prefix=f"edgemnist-{args.command}-", suffix=".log")
    os.close(handle)
    return Path(path), True


def _emit(args, result) -> int:
    """Prints a handler's Output (JSON with --json, else its text) and returns the exit status."""
    if not isinstance(result, Output):
        return int(result or 0)
    print_json(result.data) if args.json else print(result.text)
    return result.status


def _call_handler(args):
    """The handler's result. Its prints (Keras progress, stage lines) go to stderr: stdout holds
    only the result, so `--json` output stays one JSON object a script can parse. A command whose
    result is a stream of lines (`predict --watch`) writes them to `args.result_stream`."""
    args.result_stream = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        return args.func(args)


def _run(args) -> int:
    """Runs the command's handler with native output captured (console.native_output_to)."""
    if args.verbose:
        os.environ[console.VERBOSE_ENV] = "1"  # also for the stages and child processes it starts
    if console.verbose():
        return _emit(args, _call_handler(args))
    log_path, temporary = _native_log(args)
    failed = True
    try:
        with console.native_output_to(log_path):
            result = _call_handler(args)
        status = _emit(args, result)
        failed = status != 0
        return status
    finally:
        if temporary and (not failed or not log_path.stat().st_size):
            log_path.unlink(missing_ok=True)


def _fail(status: int, message: str) -> int:
    print(f"edgemnist: error: {message}", file=sys.stderr)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except MissingExtraError as exc:
        return _fail(1, str(exc))
    except OutputError as exc:
        return _fail(1, str(exc))
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("EDGEMNIST_DEBUG"):
            raise
        return _fail(2, console.first_line(exc))
    except Exception as exc:  # a real failure: one line, traceback on request
        if os.environ.get("EDGEMNIST_DEBUG"):
            raise
        return _fail(1, f"{type(exc).__name__}: {console.first_line(exc, default='')} "
                        "(EDGEMNIST_DEBUG=1 shows the traceback)")


if __name__ == "__main__":  # python -m edgemnist.cli: run the imported module, whose Output the handlers return
    from edgemnist.cli import main as _main

    sys.exit(_main())
