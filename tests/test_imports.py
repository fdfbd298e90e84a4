"""No import cycles among edgemnist's modules: the package tree reads as the pipeline, one way.

Static (ast), so it costs nothing: every `import edgemnist...` and `from edgemnist... import`,
at module level and inside functions, is an edge from the importing module to the module it
names (`from edgemnist.runtime import tflite_info` names the submodule when one exists), and so
is every stage cli.py loads by name (its COMMAND_MODULES, imported with importlib).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgemnist"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top_level_only: bool = False) -> dict:
    """{module: {edgemnist modules it imports}}, read from the source with ast."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = tree.body if top_level_only else ast.walk(tree)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Try) and top_level_only:  # guarded top-level imports
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                        targets.add(inner.module)
        targets.update(_importlib_loads(tree))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _importlib_loads(tree: ast.Module) -> set:
    """The modules a module loads by name (cli's COMMAND_MODULES, imported with importlib): edges as real as an
    import statement's, which the ast walk above cannot see."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMMAND_MODULES"
                                                for t in node.targets):
            names.update(e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return names


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "pkg": {"pkg.x"}, "pkg.x": set()}) is None


def test_no_import_cycles_at_module_level():
    cycle = find_cycle(import_graph(top_level_only=True))
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_no_import_cycles_counting_imports_inside_functions():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle (function-level imports included): " + " -> ".join(cycle)


def test_the_importlib_loads_of_cli_are_edges():
    graph = import_graph()
    assert {"edgemnist.predict", "edgemnist.serve", "edgemnist.info", "edgemnist.pipeline"} <= graph["edgemnist.cli"]


def test_cli_stands_on_top_no_stage_imports_it():
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "edgemnist.cli" in targets and m != "edgemnist.__main__")
    assert importers == [], f"these modules import edgemnist.cli (import edgemnist.output instead): {importers}"


def test_training_knows_targets_not_microcontrollers():
    # a target's model preset is a model shape: training reads it from edgemnist.targets, never from the
    # firmware side (edgemnist.micro), which stands on the trained model instead
    graph = import_graph()
    training = sorted(m for m in graph if m.startswith("edgemnist.training"))
    assert training and "edgemnist.targets" in graph["edgemnist.training.train"]
    importers = sorted(m for m in training if any(t.startswith("edgemnist.micro") for t in graph[m]))
    assert importers == [], f"these training modules import edgemnist.micro: {importers}"
    assert not any(t.startswith("edgemnist.micro") for t in graph["edgemnist.targets"])


def test_each_command_lives_in_the_module_named_as_it_but_the_two_the_readme_names():
    # README (Layout): a command lives in the module named as the command, except data and export
    import argparse

    from edgemnist import cli

    exceptions = {"data": "edgemnist.data.download", "export": "edgemnist.export.convert"}
    for name in cli.COMMAND_MODULES:
        module = importlib.import_module(name)
        parser = argparse.ArgumentParser()
        module.add_commands(parser.add_subparsers())
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices
        assert commands, name
        for command in commands:
            expected = exceptions.get(command, f"{name.rsplit('.', 1)[0]}.{command}")
            assert name == expected, f"edgemnist {command} is registered by {name}"
