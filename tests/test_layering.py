"""Dependencies flow one way: each module of pskinlib, and of the book's package beside it, imports only modules of
its own layer or of a lower one, and no two modules import each other, directly or round a circle (imports inside
functions count too). The book sits above the whole library: pskinlib never imports it."""

from __future__ import annotations

from pathlib import Path

from book.build import module_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pskinlib", "book")

# Lowest first. A module belongs to the layer with the longest of its names that it equals or starts with.
LAYERS = (
    ("pskinlib", "pskinlib.info", "pskinlib.errors", "pskinlib.io"),
    ("pskinlib.data",),
    ("pskinlib.metrics",),
    ("pskinlib.train", "pskinlib.runs"),
    ("pskinlib.evaluate",),
    ("pskinlib.explain",),
    ("pskinlib.cli",),
    # the book: its package facts, then page layout, then what reads records, then the build
    ("book",),
    ("book.format", "book.figures", "book.chapter", "book.dataset", "book.static_inspector", "book.references",
     "book.sphinx_scripts", "book.build_times"),
    ("book.findings", "book.runs"),
    ("book.outside",),
    ("book.appearance", "book.shortcuts"),
    ("book.tables", "book.clinical", "book.checklist"),
    ("book.build",),
    ("book.__main__",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
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
    """The modules of pskinlib and the book that ``path`` imports (absolute or relative, at any depth of the file),
    read by the build's own import walker."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return {m for m in module_imports(path.read_text(), package, _exists) if m.split(".")[0] in PACKAGES}


def _exists(module: str) -> bool:
    relative = Path(*module.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
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
    root = ROOT
    files = [p for folder in ("pskinlib", "book", "benchmarks", "experiments", "notebooks")
             for p in (root / folder).rglob("*") if p.suffix in (".py", ".ipynb") and p.name != "runs.py"]
    spelled = [f"{p.relative_to(root)}: {name}" for p in files for name in names if name in p.read_text()]
    assert not spelled, "\n".join(spelled)


BOOK_STACK = ("myst_nb", "papermill", "jupyter_book", "sphinx", "nbformat", "nbclient")


def test_pskinlib_imports_and_trains_with_the_book_stack_absent(tmp_path):
    """Every pskinlib module imports, and a run trains and predicts, while importing any package of the book's stack
    fails: the library needs none of it."""
    import os
    import subprocess
    import sys

    script = f"""
import importlib, pkgutil, sys

class BookStackAbsent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BOOK_STACK!r}:
            raise ImportError(f"{{name}} is not installed (the book's stack is absent)")

sys.meta_path.insert(0, BookStackAbsent())
import pskinlib
for module in pkgutil.walk_packages(pskinlib.__path__, "pskinlib."):
    importlib.import_module(module.name)
from pskinlib.cli import main
assert main(["data", "demo", "--out", r"{tmp_path / 'demo'}", "--lesions", "60"]) == 0
assert main(["train", "--profile", "smoke", "--data-dir", r"{tmp_path / 'demo'}", "--image-size", "16", "--epochs",
             "1", "--quiet", "--runs-dir", r"{tmp_path / 'runs'}"]) == 0
assert not any(name.split(".")[0] in {BOOK_STACK!r} for name in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PSKIN_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
