"""Dependencies flow one way: each module of pskinlib imports only modules of its own layer or of a lower one, and
no two modules import each other, directly or round a circle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pskinlib"

# Lowest first. A module belongs to the first layer one of whose names it equals or starts with.
LAYERS = (
    ("pskinlib", "pskinlib.info", "pskinlib.errors", "pskinlib.io"),
    ("pskinlib.data",),
    ("pskinlib.metrics",),
    ("pskinlib.train", "pskinlib.runs"),
    ("pskinlib.evaluate",),
    ("pskinlib.explain",),
    ("pskinlib.report",),
    ("pskinlib.cli",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (rank, name)
    assert best is not None, f"{module} belongs to no layer of tests/test_layering.py"
    return best[0]


def _imports(path: Path, module: str) -> set[str]:
    """The pskinlib modules ``path`` imports (absolute or relative, at any depth of the file)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pskinlib")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not base.startswith("pskinlib"):
                continue
            for alias in node.names:  # `from .data import demo` imports the module pskinlib.data.demo
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _exists(candidate) else base)
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = {m for m in _imports(path, module) if m != module}
    return graph


def test_no_module_imports_a_higher_layer():
    wrong = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
             for module, targets in _graph().items() for target in targets if _layer(target) > _layer(module)]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target] if target in trail else [module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_checker_resolves_relative_and_lazy_imports(tmp_path):
    """The checker itself: a data module that imports the trainer inside a function, relatively, is caught."""
    source = tmp_path / "fake.py"
    source.write_text("def f():\n    from ..train.trainer import train\n    from .. import metrics\n")
    imports = _imports(source, "pskinlib.data.fake")
    assert imports == {"pskinlib.train.trainer", "pskinlib.metrics"}
    assert max(_layer(t) for t in imports) > _layer("pskinlib.data.fake")


def test_only_the_run_record_spells_the_run_folders_file_names():
    """One owner for the record format: outside pskinlib/runs.py no code or chapter names a run folder's files."""
    names = ('"config.json"', '"metrics.json"', '"history.csv"', '"split.csv"', '"best.pt"', '"last.pt"',
             '"fusion.json"', '"ensemble.json"', '"quality_bar.json"', '"gpu_paper_run.json"', '"predictions_',
             'f"predictions_',
             '"fusion-metadata"', '"fusion-image"')
    root = PACKAGE.parent
    files = [p for folder in ("pskinlib", "benchmarks", "experiments", "notebooks")
             for p in (root / folder).rglob("*") if p.suffix in (".py", ".ipynb") and p.name != "runs.py"]
    spelled = [f"{p.relative_to(root)}: {name}" for p in files for name in names if name in p.read_text()]
    assert not spelled, "\n".join(spelled)
