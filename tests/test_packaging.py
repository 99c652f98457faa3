"""Set-up: the README's two commands, CI calling the test command, and the two dependency lists agreeing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).replace('"', "'").lower()


def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = project["dependencies"] + extras["book"] + extras["dev"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1
    listed = [r for r in pip_lists[0] if not r.startswith("-e")]
    assert sorted(map(_normalise, listed)) == sorted(map(_normalise, declared))
    assert "python=3.11" in environment["dependencies"]


def test_jupyter_book_is_pinned_below_2_in_the_book_s_extra_not_in_the_library():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(_normalise(d).startswith("jupyter-book") and "<2" in d for d in project["optional-dependencies"]["book"])
    stack = ("jupyter-book", "papermill", "myst-nb", "sphinx", "jupyterlab")
    assert not any(_normalise(d).startswith(stack) for d in project["dependencies"])


def test_readme_names_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)


def test_licence_is_an_spdx_expression_with_its_file_shipped():
    # setuptools deprecates the table form ({text = ...}) and stops building it from 2027-02-18.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] and all((ROOT / f).is_file() for f in project["license-files"])
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    # license-files needs setuptools 77 or later.
    assert any(_normalise(r) == "setuptools>=77" for r in pyproject["build-system"]["requires"])
