"""Writes docs/cli.md, the flag reference of every `edgemnist` command, from the parser itself.

Usage: .venv/bin/python tools/gen_cli_docs.py            (rewrite docs/cli.md)
       .venv/bin/python tools/gen_cli_docs.py --check    (exit 1 when docs/cli.md is stale)

The parser is the one owner of flags, metavars, help and defaults (each default comes from
its stage's config dataclass): the page is rendered from it, never edited by hand, and
tests/test_cli.py fails when the committed page differs from a fresh rendering.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cli.md"
REGENERATE = ".venv/bin/python tools/gen_cli_docs.py"
# Flags every command takes, described once at the top instead of in each table.
_COMMON = ("-h", "--json")
# Wide enough that argparse never wraps a usage line: the page must not depend on the terminal.
_NO_WRAP = 10_000


def _cell(text: str) -> str:
    """Text made safe for one Markdown line or table cell (`<out>` would read as an HTML tag)."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "\\<")


def _value(action: argparse.Action) -> str:
    """What follows the flag, as --help writes it: METAVAR, {a,b}, [X], X [X ...]."""
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        name = action.metavar
    elif action.choices is not None:
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        name = action.dest if not action.option_strings else action.dest.upper()
    return {"?": f"[{name}]", "*": f"[{name} ...]", "+": f"{name} [{name} ...]"}.get(action.nargs, name)


def _flag(action: argparse.Action) -> str:
    """`--name VALUE`, then its other spellings: the first cell of a row."""
    value = _value(action)
    if not action.option_strings:
        return f"`{value}`"
    spellings = sorted(action.option_strings, key=lambda s: (not s.startswith("--"), s))
    first = f"{spellings[0]} {value}".strip()
    return ", ".join([f"`{first}`", *(f"`{s}`" for s in spellings[1:])])


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as --help prints it (%(default)s filled in), and "required" when it is."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""  # argparse's own expansion
    if action.required and action.option_strings:
        text = f"{text}; required" if text else "required"
    return _cell(text)


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=_NO_WRAP)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _subcommands(parser: argparse.ArgumentParser) -> dict:
    """name -> (sub-parser, its one-line help) of a parser's sub-commands (none: {})."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help for choice in action._choices_actions}
            return {name: (sub, summaries.get(name)) for name, sub in action.choices.items()}
    return {}


def _table(parser: argparse.ArgumentParser, actions: list) -> list:
    rows = [a for a in actions if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)
            and not any(s in _COMMON for s in a.option_strings)]
    if not rows:
        return []
    return ["| flag | what it does |", "|---|---|",
            *(f"| {_flag(a)} | {_help(parser, a)} |" for a in rows), ""]


def _command(parser: argparse.ArgumentParser, summary: str | None, level: int) -> list:
    """The section of one command: description, usage, then one table per argument group."""
    lines = [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description or summary:
        lines += [_cell(parser.description or summary), ""]
    lines += ["```", _usage(parser), "```", ""]
    # argparse's own two groups (positionals, options) make one table; a named group gets its own.
    default_groups = [g for g in parser._action_groups if g in (parser._positionals, parser._optionals)]
    lines += _table(parser, [a for g in default_groups for a in g._group_actions])
    for group in parser._action_groups:
        table = _table(parser, group._group_actions)
        if group in default_groups or not table:
            continue
        lines += [f"**{group.title}**" + (f": {_cell(group.description)}" if group.description else ""), "", *table]
    if parser.epilog:
        lines += [_cell(parser.epilog), ""]
    for sub, sub_summary in _subcommands(parser).values():
        lines += _command(sub, sub_summary, level + 1)
    return lines


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """docs/cli.md's text, rendered from `edgemnist.cli.build_parser()` (or `parser`)."""
    if parser is None:
        from edgemnist import cli

        parser = cli.build_parser()
    commands = _subcommands(parser)
    lines = [
        "# `edgemnist` command-line reference",
        "",
        f"<!-- Generated from the argument parser by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every command also takes `-h`/`--help` and `--json` (print the result as one JSON object "
        "on stdout instead of the table; keys in [outputs.md](outputs.md)). Defaults are the "
        "settings dataclasses' field defaults (`TrainConfig`, `ExportConfig`, `BenchConfig`, ...). "
        "`--data-dir` defaults to `$EDGEMNIST_DATA`, else the shipped MNIST.",
        "",
        "Commands: " + ", ".join(f"[`{name}`](#edgemnist-{name})" for name in commands) + ".",
        "",
        "## `edgemnist`",
        "",
        "```",
        _usage(parser),
        "```",
        "",
        *_table(parser, parser._actions),
    ]
    for sub, summary in commands.values():
        lines += _command(sub, summary, 2)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md differs from a fresh rendering")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    from edgemnist.artifacts import atomic_write_text

    atomic_write_text(DOC, text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
