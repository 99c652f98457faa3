"""Shared fixtures: small HAM10000-like folders written by the tests, and the real data when PSKIN_DATA is set."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
# A class's images are this colour, so a test can tell from the pixels which image it got.
CLASS_COLOURS = {"mel": (200, 30, 30), "nv": (30, 200, 30), "bkl": (30, 30, 200), "bcc": (200, 200, 30)}


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the tests' prepared caches out of the user's ~/.cache."""
    os.environ["PSKIN_CACHE"] = str(tmp_path_factory.mktemp("pskin-cache"))


def ham_rows(lesions_per_class: dict[str, int], images_per_lesion: int = 2, seed: int = 0) -> pd.DataFrame:
    """Metadata rows: each lesion has 1..images_per_lesion images."""
    rng = np.random.default_rng(seed)
    rows, image_number, lesion_number = [], 0, 0
    for dx, n_lesions in lesions_per_class.items():
        for _ in range(n_lesions):
            lesion_number += 1
            for _ in range(int(rng.integers(1, images_per_lesion + 1))):
                image_number += 1
                rows.append({"lesion_id": f"HAM_{lesion_number:07d}", "image_id": f"ISIC_{image_number:07d}",
                             "dx": dx, "dx_type": "histo", "age": float(rng.integers(1, 17) * 5),
                             "sex": "male", "localization": "back"})
    return pd.DataFrame(rows, columns=COLUMNS)


def image_bytes_for(dx: str, image_id: str, size=(200, 150)) -> np.ndarray:
    """A class-coloured image with a per-image gradient, so resizing and ordering can be checked."""
    width, height = size
    seed = int(image_id.split("_")[-1])
    gradient = np.linspace(0, 50, width, dtype=np.float32)[None, :, None]
    base = np.array(CLASS_COLOURS.get(dx, (120, 120, 120)), dtype=np.float32)[None, None, :]
    noise = np.random.default_rng(seed).integers(0, 30, (height, width, 3))
    return np.clip(base + gradient + noise, 0, 255).astype(np.uint8)


def write_ham_folder(root: Path, rows: pd.DataFrame, layout: str = "images", size=(200, 150)) -> Path:
    """Write a HAM10000-like folder in one of the three layouts pskin reads."""
    root.mkdir(parents=True, exist_ok=True)
    folders = {"images": ["images"], "official": ["HAM10000_images_part_1", "HAM10000_images_part_2"],
               "isic2018": ["ISIC2018_Task3_Training_Input"]}[layout]
    for folder in folders:
        (root / folder).mkdir(exist_ok=True)
    for i, row in enumerate(rows.itertuples()):
        folder = folders[i % len(folders)]
        Image.fromarray(image_bytes_for(row.dx, row.image_id, size)).save(root / folder / f"{row.image_id}.jpg",
                                                                          quality=95)
    if layout == "isic2018":
        codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
        truth = pd.DataFrame({"image": rows["image_id"]})
        for code in codes:
            truth[code] = (rows["dx"].str.upper() == code).astype(float)
        (root / "ISIC2018_Task3_Training_GroundTruth").mkdir(exist_ok=True)
        truth.to_csv(root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv",
                     index=False)
        groups = pd.DataFrame({"image": rows["image_id"], "lesion_id": rows["lesion_id"],
                               "diagnosis_confirm_type": rows["dx_type"]})
        groups.to_csv(root / "ISIC2018_Task3_Training_LesionGroupings.csv", index=False)
    else:
        rows.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.fixture
def tiny_ham(tmp_path) -> Path:
    """A small HAM10000-like folder: 3 classes, imbalanced like the real one, lesions with several images."""
    return write_ham_folder(tmp_path / "ham", ham_rows({"mel": 12, "nv": 40, "bkl": 12}))


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished run of a few 16-px images (seconds on a CPU) and its data folder, trained once for the tests that
    read a run or add an evaluation to it (none changes what it holds)."""
    from pskinlib.train.config import make_config
    from pskinlib.train.trainer import train

    root = tmp_path_factory.mktemp("small-run")
    data = write_ham_folder(root / "ham", ham_rows({"mel": 8, "nv": 16, "bkl": 8}))
    run = train(make_config("smoke", data_dir=str(data), image_size=16, epochs=1, batch_size=8, quiet=True,
                            tta=False, threads=1, max_train_batches=2), runs_dir=root / "runs")
    return run, data


@pytest.fixture(scope="session")
def imbalanced_ham(tmp_path_factory) -> Path:
    """A HAM10000-like folder as imbalanced as the real one (mel 12, nv 40, bkl 12 lesions), written once."""
    return write_ham_folder(tmp_path_factory.mktemp("imbalanced-ham"), ham_rows({"mel": 12, "nv": 40, "bkl": 12}))


@pytest.fixture(scope="session")
def grad_cam_run(imbalanced_ham, tmp_path_factory) -> Path:
    """A finished 32-px run of :func:`imbalanced_ham`, trained once: at 32 px ResNet18's layer1 has the 8 x 8 cells a
    Grad-CAM map needs (at 16 px, 4 x 4)."""
    from pskinlib.train.config import make_config
    from pskinlib.train.trainer import train

    config = make_config("smoke", data_dir=str(imbalanced_ham), image_size=32, epochs=1, batch_size=16,
                         warmup_epochs=0.5, quiet=True, deterministic=True, threads=1)
    return train(config, runs_dir=tmp_path_factory.mktemp("grad-cam-runs"))


@pytest.fixture(scope="session")
def run_predictions(grad_cam_run):
    """The test predictions of :func:`grad_cam_run` joined with their images, as the inspector loads them."""
    from pskinlib.explain.inspector import load_predictions

    return load_predictions(grad_cam_run, "test")


@pytest.fixture(scope="session")
def trained(grad_cam_run):
    """:func:`grad_cam_run`'s best checkpoint as a model that predicts image files, on the CPU."""
    from pskinlib.evaluate.predict import load_trained

    return load_trained(grad_cam_run, device="cpu")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real HAM10000, or a skip saying why it is not used."""
    value = os.environ.get("PSKIN_DATA")
    if not value:
        pytest.skip("real HAM10000 not available: set PSKIN_DATA to its folder (CI uses ../shared/data/ham10000)")
    path = Path(value)
    if not (path / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"PSKIN_DATA={value} holds no HAM10000_metadata.csv")
    return path


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip archive in memory holding ``entries`` (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class _Files(http.server.BaseHTTPRequestHandler):
    """Answers GET /any/path/NAME with ``server.files[NAME]``, else 404."""

    def do_GET(self) -> None:
        data = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(files: dict[str, bytes]):
    """A server on 127.0.0.1 for ``files`` (by file name; editable through ``server.files``): yields it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.files = files
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


# The smoke book's own time table (book.build_times), kept by the fixture that builds it and printed at the end.
SMOKE_BOOK_TIMES = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, config):
    """Where the suite's time went, per test module (setup, call and teardown together), slowest first: the figures
    to compare when the suite is made faster or slower; then the smoke book's time table, when one was built."""
    seconds: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                module = report.nodeid.split("::")[0]
                seconds[module] = seconds.get(module, 0.0) + report.duration
    if not seconds:
        return
    terminalreporter.write_sep("-", "seconds per test module")
    for module, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{spent:8.1f}  {module}")
    terminalreporter.write_line(f"{sum(seconds.values()):8.1f}  in all")
    for line in config.stash.get(SMOKE_BOOK_TIMES, []):
        terminalreporter.write_line(line)
