"""The book pipeline: parameters checked before anything runs, failures named and contained, unchanged chapters
skipped, and the table of contents in step with the chapters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

import book.build as book
from book import BookBuildError
from book.build import Chapter, book_chapters, check_parameters, table_of_contents
from book.runs import runs_table

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, parameters: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def test_every_source_notebook_has_a_parameters_cell_first_and_no_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert not any(c.get("outputs") for c in code), f"{path.name} is committed with outputs"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name


def test_unknown_and_mistyped_parameters_are_errors():
    training = ROOT / "notebooks" / "training.ipynb"
    check_parameters(training, {"model": "resnet18", "data_dir": None, "train_overrides": {"epochs": 2}})
    check_parameters(training, {"data_dir": "/some/folder"})
    with pytest.raises(ValueError, match="unknown parameter.*modle"):
        check_parameters(training, {"modle": "resnet18"})
    with pytest.raises(ValueError, match="train_overrides must be dict"):
        check_parameters(training, {"train_overrides": "epochs=2"})
    with pytest.raises(ValueError, match="model must be str"):
        check_parameters(training, {"model": 18})
    with pytest.raises(ValueError, match="split_seed must be int"):
        check_parameters(ROOT / "notebooks" / "data_exploration.ipynb", {"split_seed": True})


def test_book_parameters_must_be_declared_by_some_notebook():
    chapters = book_chapters("smoke", "DATA", "RUNS", {"split_seed": 3})
    assert [c.parameters.get("split_seed") for c in chapters if c.notebook == "data_exploration.ipynb"] == [3]
    with pytest.raises(ValueError, match="declared by no notebook"):
        book_chapters("smoke", "DATA", "RUNS", {"no_such_parameter": 1})
    with pytest.raises(ValueError, match="profile"):
        book_chapters("huge", "DATA", "RUNS")


def test_bad_training_parameters_fail_before_any_notebook_runs(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(book, "execute_chapter", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(book, "produce", lambda *a, **k: ran.append(a))
    with pytest.raises(ValueError, match="epochs"):
        book.build_book("smoke", data_dir=str(tmp_path), parameters={"train_overrides": {"epochs": -1}},
                        build_dir=tmp_path / "build")
    assert ran == []


def test_committed_toc_is_the_quick_books():
    committed = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert committed == table_of_contents(book_chapters("quick", "DATA", "RUNS"))


def _tiny_book(tmp_path, monkeypatch, body="print('hello')"):
    """A checkout of two chapters: one reads the reference results and imports the book's findings module (its own
    copy here), the other reads nothing."""
    notebooks, book_dir, build = tmp_path / "notebooks", tmp_path / "book", tmp_path / "build"
    for folder in (notebooks, book_dir):
        folder.mkdir()
    (book_dir / "__init__.py").write_text("")
    (book_dir / "findings.py").write_text("WORD = 'found'\n")
    _notebook(notebooks / "one.ipynb", 'x: int = 1\nreference_dir: str = "book/results"',
              "from book import findings\nprint(x, findings.WORD)")
    _notebook(notebooks / "two.ipynb", "y: int = 2", body)
    chapters = [Chapter("one.ipynb", "01_one.ipynb", "One", "Part", {"x": 5}),
                Chapter("two.ipynb", "02_two.ipynb", "Two", "Part", {"y": 7})]
    (tmp_path / "_config.yml").write_text("title: a tiny book\n")  # tmp_path is the checkout of this book
    monkeypatch.setattr(book, "book_chapters", lambda *a, **k: chapters)
    rendered = []

    def fake_render(build_dir, chapters, root, warnings_are_errors=False, log=print):
        (build_dir / "html").mkdir(parents=True, exist_ok=True)
        (build_dir / "html" / "index.html").write_text(f"build {len(rendered)}")
        rendered.append(1)
        return build_dir / "html"

    monkeypatch.setattr(book, "render_html", fake_render)
    data = tmp_path / "data"  # a data folder the chapters are given (they do not read it)
    data.mkdir()
    return notebooks, book_dir, build, data


def _reused(logs) -> list[str]:
    return sorted(m.split()[1].rstrip(":") for m in logs if "reused, unchanged" in m)


@pytest.mark.slow
def test_a_failing_chapter_is_named_and_the_previous_book_stays(tmp_path, monkeypatch):
    notebooks, book_dir, build, data = _tiny_book(tmp_path, monkeypatch)
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=lambda m: None)
    before = (build / "html" / "index.html").read_text()
    executed_before = (book_dir / "02_two.ipynb").read_text()
    _notebook(notebooks / "two.ipynb", "y: int = 2", "print('about to fail')\nraise RuntimeError('broken chapter')")
    with pytest.raises(BookBuildError) as error:
        book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=lambda m: None)
    message = str(error.value)
    assert "two.ipynb" in message and "cell" in message and "broken chapter" in message
    assert (build / "html" / "index.html").read_text() == before
    assert (book_dir / "02_two.ipynb").read_text() == executed_before


@pytest.mark.slow
def test_chapters_run_two_at_a_time_and_a_later_group_after_the_earlier_one(tmp_path):
    notebooks, staging = tmp_path / "notebooks", tmp_path / "staging"
    notebooks.mkdir()
    staging.mkdir()
    body = ("import pathlib, time\nstarted = time.time()\ntime.sleep(1)\n"
            "pathlib.Path(f'{name}.times').write_text(f'{started} {time.time()}')")
    chapters = [Chapter(f"{name}.ipynb", f"{name}.ipynb", name, "Part", {"name": name}) for name in "abc"]
    for chapter in chapters:
        _notebook(notebooks / chapter.notebook, "name: str = ''", body)
    finished = [c.notebook for c, seconds in book.execute_chapters([chapters[:2], chapters[2:]], staging, tmp_path,
                                                                   tmp_path / "logs") if seconds > 0]
    assert sorted(finished[:2]) == ["a.ipynb", "b.ipynb"] and finished[2] == "c.ipynb"
    (a_start, a_end), (b_start, b_end), (c_start, _) = (
        map(float, (tmp_path / f"{name}.times").read_text().split()) for name in "abc")
    assert a_start < b_end and b_start < a_end  # a and b side by side
    assert c_start >= max(a_end, b_end)  # c once both had finished
    assert {p.name for p in staging.iterdir()} == {"a.ipynb", "b.ipynb", "c.ipynb"}


@pytest.mark.slow
def test_unchanged_chapters_are_not_run_again(tmp_path, monkeypatch):
    notebooks, book_dir, build, data = _tiny_book(tmp_path, monkeypatch)
    logs = []
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    # The two chapters ran side by side, each in a kernel of its own with its own log.
    one, two = (step for step in json.loads((build / "times.json").read_text())["steps"]
                if step["step"] == "executed")
    assert one["began"] < two["began"] + two["seconds"] and two["began"] < one["began"] + one["seconds"]
    assert {p.name for p in (build / "logs").iterdir()} == {"01_one.log", "02_two.log"}
    logs.clear()
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    assert sum("reused, unchanged" in m for m in logs) == 2, logs
    times = json.loads((build / "times.json").read_text())  # the build's time table says what it reused
    assert [(s["stage"], s["step"], s["what"]) for s in times["steps"]] == [
        ("chapters", "reused", "01_one"), ("chapters", "reused", "02_two"), ("rendering", "HTML", "the book")]
    assert any(line.startswith("  chapters: reused") for line in logs) and "usable_cpus" in times["machine"]
    _notebook(notebooks / "two.ipynb", "y: int = 2", "print('changed')")
    logs.clear()
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    assert sum("reused, unchanged" in m for m in logs) == 1
    executed = nbformat.read(book_dir / "02_two.ipynb", as_version=4)
    assert any("changed" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert json.loads((build / "manifest.json").read_text()).keys() == {"01_one.ipynb", "02_two.ipynb"}


@pytest.mark.slow
def test_a_chapter_runs_again_when_what_it_reads_or_imports_changed_and_only_then(tmp_path, monkeypatch):
    """A record added to the reference results, or a reworded book module, runs again the chapter that reads it or
    imports it, and no other."""
    _, book_dir, build, data = _tiny_book(tmp_path, monkeypatch)
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=lambda m: None)
    record = tmp_path / "book" / "results" / "quick" / "a-run"
    record.mkdir(parents=True)
    (record / "metrics.json").write_text("{}")
    logs = []
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    assert _reused(logs) == ["02_two"], logs
    (book_dir / "findings.py").write_text("WORD = 'reworded'\n")
    logs.clear()
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    assert _reused(logs) == ["02_two"], logs
    executed = nbformat.read(book_dir / "01_one.ipynb", as_version=4)
    assert any("reworded" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    logs.clear()
    book.build_book("smoke", root=tmp_path, data_dir=str(data), build_dir=build, log=logs.append)
    assert _reused(logs) == ["01_one", "02_two"], logs


def test_a_chapter_depends_on_the_book_modules_it_imports_and_on_theirs():
    found = {p.name for p in book.local_dependencies(ROOT / "notebooks" / "results.ipynb", ROOT)}
    assert {"tables.py", "findings.py", "figures.py", "runs.py", "outside.py", "__init__.py"} <= found
    assert "build.py" not in found
    assert "build.py" not in {p.name for p in book.local_dependencies(ROOT / "notebooks" / "data_exploration.ipynb",
                                                                       ROOT)}
    performance = book.local_dependencies(ROOT / "notebooks" / "performance.ipynb", ROOT)
    assert ROOT / "benchmarks" / "bench.py" in performance


def test_runs_table_reads_a_committed_reference_run():
    run = ROOT / "book" / "results" / "quality-bar" / "1x16-64px" / "member-0"
    (record,) = [p for p in run.iterdir() if p.is_dir()]
    table = runs_table(run)
    metrics = json.loads((record / "metrics.json").read_text())
    config = json.loads((record / "config.json").read_text())
    assert len(table) == 1
    row = table.iloc[0]
    assert row["precision"] == config["environment"]["precision"] and row["model"] == config["config"]["model"]
    assert row["balanced_accuracy"] == metrics["test"]["balanced_accuracy"]
    assert row["val_balanced_accuracy"] == metrics["val"]["balanced_accuracy"]
    assert row["recall_mel"] == metrics["test"]["per_class"]["mel"]["recall"]


def _absolute_paths(value, where: str):
    """Every string in a JSON value that reads as an absolute path (``/a/b…`` or ``~/…``), with where it is."""
    if isinstance(value, dict):
        return [hit for key, item in value.items() for hit in _absolute_paths(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in _absolute_paths(item, f"{where}[{i}]")]
    if isinstance(value, str) and re.match(r"^(~|/[^/\s]+)/", value):
        return [(where, value)]
    return []


def test_no_committed_record_names_a_folder_of_the_machine_that_made_it():
    """The reference records name their data by dataset, layout and checksum: no JSON string and no CSV cell is an
    absolute path."""
    results = ROOT / "book" / "results"
    hits = [hit for path in results.rglob("*.json")
            for hit in _absolute_paths(json.loads(path.read_text()), str(path.relative_to(results)))]
    cell = re.compile(r'(^|,)"?(~|/[^/,\s"]+)/')
    hits += [(str(path.relative_to(results)), line[:80]) for path in results.rglob("*.csv")
             for line in path.read_text().splitlines() if cell.search(line)]
    assert len(list(results.rglob("config.json"))) > 10  # the records are there to be checked
    assert hits == []
