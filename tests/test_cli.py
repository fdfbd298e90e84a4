"""The command line as a user starts it."""
import difflib
import subprocess
import sys


def test_python_m_edgemnist_runs_the_cli():
    run = subprocess.run([sys.executable, "-m", "edgemnist", "--version"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("edgemnist ")
    run = subprocess.run([sys.executable, "-m", "edgemnist", "mcu", "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--kernels" in run.stdout


def test_help_of_every_command_is_instant_no_tensorflow_imported():
    code = ("import sys\nfrom edgemnist import cli\nparser = cli.build_parser()\n"
            "for name, command in parser._subparsers._group_actions[0].choices.items():\n"
            "    command.format_help()\n"
            "assert 'tensorflow' not in sys.modules, 'building the parser imported TensorFlow'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_every_command_takes_json_and_one_meaning_per_shared_flag():
    from edgemnist import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in commands.items()}
    data_actions = next(a for a in commands["data"]._actions if a.dest == "data_command").choices
    leaves = {**{n: f for n, f in flags.items() if n != "data"},
              **{f"data {n}": {o for a in p._actions for o in a.option_strings} for n, p in data_actions.items()}}
    assert all("--json" in f for f in leaves.values()), [n for n, f in leaves.items() if "--json" not in f]
    # --limit counts training images, --test-limit test images; the Keras input is --from everywhere.
    assert {n for n, f in flags.items() if "--limit" in f} == {"train", "finetune", "optimize"}
    assert {n for n, f in flags.items() if "--test-limit" in f} == {"optimize", "eval", "compare"}
    assert {n for n, f in flags.items() if "--from" in f} == {"finetune", "optimize", "export", "diagnose", "compare"}


def test_handlers_return_output_that_cli_prints(tflite_variants, capsys):
    import json

    from edgemnist import cli

    assert cli.main(["info", str(tflite_variants["int8"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"][0]["dtype"] == "int8"
    assert cli.main(["info", str(tflite_variants["int8"])]) == 0
    assert "DEPTHWISE_CONV_2D" in capsys.readouterr().out


def test_handler_prints_go_to_stderr_and_stdout_holds_one_json_object(capsys, monkeypatch):
    import json

    from edgemnist import cli

    def chatty(args):  # what Keras progress bars and stage lines do inside a handler
        print("epoch 1/1: progress")
        return cli.Output({"ok": True}, "done")

    parser = cli.build_parser()
    args = parser.parse_args(["verify", "somewhere", "--json"])
    monkeypatch.setattr(args, "func", chatty)
    assert cli._run(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"ok": True} and "epoch 1/1: progress" in err


def test_bad_input_and_failures_are_one_line(capsys, tmp_path):
    from edgemnist import cli

    missing = tmp_path / "missing.tflite"
    assert cli.main(["eval", str(missing)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"edgemnist: error: {missing}: no such file"]


def test_docs_cli_md_is_the_parser_rendered():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs", script)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    from edgemnist.training.train import TrainConfig

    fresh = gen.render()
    assert f"`--epochs EPOCHS` | maximum epochs (default {TrainConfig().epochs})" in fresh  # the config's default
    committed = gen.DOC.read_text(encoding="utf-8").splitlines() if gen.DOC.is_file() else []
    stale = [line for line in difflib.unified_diff(committed, fresh.splitlines(), lineterm="", n=0)][2:12]
    assert not stale, f"docs/cli.md is stale: run {gen.REGENERATE}\n" + "\n".join(stale)
