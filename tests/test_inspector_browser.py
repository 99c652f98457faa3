"""The inspector live in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by playwright runs the
chapter's notebook, clicks a filter and sees the gallery change."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ham_rows, write_ham_folder

from book.build import CHROMIUM, CHROMIUM_ARGS
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_for_kernel(url: str, token: str, timeout: float = 60) -> None:
    """Until the notebook's kernel has started and is idle (cells run before that are silently dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as response:
            sessions = json.loads(response.read())
        if any((s.get("kernel") or {}).get("execution_state") == "idle" for s in sessions):
            return
        time.sleep(0.5)
    raise RuntimeError(f"no idle kernel after {timeout} s")


def _run_all_cells(page) -> None:
    """Run ▸ Run All Cells from the menu, as a reader would. Repeated only while no cell has started: the front
    end drops the request when it is not yet connected to the kernel."""
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    for _ in range(3):
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(re.search(r"\[(\*|\d+)\]", text) for text in prompts.all_inner_texts()):
                return
            time.sleep(0.5)
    raise RuntimeError("Run All Cells did not start any cell")


@pytest.fixture
def sync_api():
    """playwright's sync API and a Chromium to drive, or a skip saying what is missing (checked before the server
    starts)."""
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium`")
    return api


@contextlib.contextmanager
def _jupyterlab(root_dir: Path, tmp_path: Path, env: dict[str, str]):
    """JupyterLab on 127.0.0.1 serving ``root_dir`` with a random token and ``env`` on top of this process's
    environment; yields its URL, token and log."""
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = tmp_path / "jupyter"  # settings, workspaces and runtime files stay out of the user's home
    env = {**{k: v for k, v in os.environ.items() if k not in ("PSKIN_DATA", "PSKIN_RUNS")}, **env,
           "JUPYTER_CONFIG_DIR": str(jupyter / "config"), "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
           "JUPYTER_DATA_DIR": str(jupyter / "data"),
           "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces")}
    log = tmp_path / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with open(log, "w") as handle:
        server = subprocess.Popen(command, cwd=root_dir, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server, log)
        yield f"http://127.0.0.1:{port}", token, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of the notebook, with the data in a tiny folder and a run of it to inspect, both
    named by the user's variables (the chapter reads runs; it never trains one)."""
    data = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 12, "nv": 40, "bkl": 12}))
    train(make_config("smoke", data_dir=str(data), image_size=16, epochs=1, batch_size=16, quiet=True, threads=1),
          runs_dir=tmp_path / "runs")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "inspector.ipynb", work / "inspector.ipynb")
    # The checkout on the kernel's path: the chapter imports the book's package from it, wherever its kernel runs.
    env = {"PSKIN_DATA": str(data), "PSKIN_RUNS": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)}
    with _jupyterlab(work, tmp_path, env) as (url, token, log):
        yield url, token, log, tmp_path


@pytest.fixture
def checkout_after_a_build(tmp_path):
    """JupyterLab started from the root of a checkout after ``make book``, as the inspector chapter tells a reader
    to, with neither PSKIN_DATA nor PSKIN_RUNS set: the checkout holds the book's package and notebooks and a
    build's run under ``runs/book/<profile>/``, trained on a data folder outside it (the build's runs stage makes
    that run; here a tiny one stands in for it)."""
    data = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 12, "nv": 40, "bkl": 12}))
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "book", checkout / "book", ignore=shutil.ignore_patterns("*.ipynb", "results",
                                                                          "__pycache__"))
    shutil.copytree(ROOT / "notebooks", checkout / "notebooks")
    train(make_config("smoke", data_dir=str(data), image_size=16, epochs=1, batch_size=16, quiet=True, threads=1),
          runs_dir=checkout / "runs" / "book" / "smoke")
    # The copy's book package first on the kernel's path, so the chapter's defaults look in this checkout.
    with _jupyterlab(checkout, tmp_path, {"PYTHONPATH": str(checkout)}) as (url, token, log):
        yield url, token, log, tmp_path


def _open_and_run_all(page, sync_api, url: str, token: str, log: Path, tmp_path: Path, notebook: str):
    """Open ``notebook`` in JupyterLab, run all its cells and wait for the inspector's gallery; a cell's error
    fails the test with the cells' error output, the server log and a screenshot."""
    page.goto(f"{url}/lab/tree/{notebook}?token={token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    _wait_for_kernel(url, token)
    _run_all_cells(page)
    gallery = page.locator(".pskin-gallery")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    try:
        gallery.wait_for(timeout=150_000)
    except sync_api.TimeoutError:
        details = "\n".join(errors.all_inner_texts())[-3000:]
        page.screenshot(path=tmp_path / "failure.png")
        pytest.fail(f"the inspector never appeared (screenshot {tmp_path / 'failure.png'}); cell errors:\n"
                    f"{details}\nserver log:\n{log.read_text()[-2000:]}")
    return gallery


@contextlib.contextmanager
def _lab_page(sync_api):
    """A Chromium page as wide as the book's screenshots, waiting up to a minute for each step."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_the_notebook_runs_in_jupyterlab_and_a_filter_changes_the_gallery(sync_api, jupyterlab):
    url, token, log, tmp_path = jupyterlab
    with _lab_page(sync_api) as page:
        gallery = _open_and_run_all(page, sync_api, url, token, log, tmp_path, "inspector.ipynb")
        label = page.locator(".pskin-page-label")
        page.wait_for_function("el => el.innerText.includes('images')", arg=label.element_handle())
        before_label, before_gallery = label.inner_text(), gallery.inner_text()
        total = int(before_label.rsplit(" of ", 1)[1])

        page.locator(".pskin-correct-filter button", has_text="wrong").click()
        page.wait_for_function("([el, old]) => el.innerText !== old",
                               arg=[label.element_handle(), before_label])
        after_label = label.inner_text()
        shown = int(after_label.rsplit(" of ", 1)[1])
        assert shown < total, f"the 'wrong' filter kept all {total} images: {after_label!r}"
        assert gallery.inner_text() != before_gallery
        visible = gallery.locator("button:visible")
        assert visible.count() == min(shown, 12)
        # Every thumbnail left is an error: red buttons, and a true class differing from the predicted one.
        for text, classes in zip(visible.all_inner_texts(), visible.evaluate_all("bs => bs.map(b => b.className)")):
            true, predicted = text.split(" ")[0].split("→")
            assert true != predicted and "mod-danger" in classes


def test_after_a_build_the_inspector_notebook_finds_the_build_s_runs_and_data_with_its_defaults(
        sync_api, checkout_after_a_build):
    url, token, log, tmp_path = checkout_after_a_build
    with _lab_page(sync_api) as page:
        gallery = _open_and_run_all(page, sync_api, url, token, log, tmp_path, "notebooks/inspector.ipynb")
        assert gallery.locator("button").count() > 0
        failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        traceback = page.locator(".jp-OutputArea-output:has-text('Traceback')")
        assert traceback.count() == 0, "\n".join(failed.all_inner_texts())[-2000:]
        # the synthetic-data warning would mean the chapter fell back to the demo set instead of the run's data
        assert page.locator(".jp-OutputArea-output:has-text('SYNTHETIC')").count() == 0
