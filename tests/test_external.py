"""External sets: the labelled-folder format, the importers of PH2 and derm7pt as their authors distribute them, the
ISIC 2017 download from fake archives on 127.0.0.1, and a run evaluated on them per source and pooled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ham_rows, image_bytes_for, serving, write_ham_folder, zip_bytes
from PIL import Image

from book.outside import methods_table
from pskinlib.cli import main
from pskinlib.data.download import download_isic2017
from pskinlib.data.labelled_folders import (
    derm7pt_code,
    import_derm7pt,
    import_ph2,
    read_labelled_folder,
)
from pskinlib.data.statistics import image_statistics, shift_table
from pskinlib.errors import DataError, OutputExistsError
from pskinlib.evaluate.external_validation import INTERNAL, POOLED, evaluate_external
from pskinlib.evaluate.image_folder import (
    REASON_NOT_RECORDED,
    TRAINED_ON,
    UNKNOWN_CLASS,
    UNREADABLE,
    leave_out,
    left_out_by_reason,
    left_out_lines,
)
from pskinlib.explain.inspector import load_evaluation_predictions
from pskinlib.runs import RunRecord
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train


def _image(path: Path, dx: str, size=(60, 45), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_bytes_for(dx, f"X_{abs(hash(path.name)) % 10_000_000}", size)).save(path, format=fmt)
    return path


def _labelled(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    for image_id, dx, _ in rows:
        _image(root / "images" / f"{image_id}.jpg", dx)
    pd.DataFrame(rows, columns=["image_id", "dx", "source_dataset"]).to_csv(root / "labels.csv", index=False)
    return root


def test_a_labelled_folder_is_read_and_its_faults_are_named(tmp_path):
    root = _labelled(tmp_path / "set", [("a", "mel", "S1"), ("b", "nv", "S1"), ("c", "bkl", "S2")])
    folder = read_labelled_folder(root)
    assert folder.sources == ["S1", "S2"] and len(folder) == 3 and Path(folder.table["path"][0]).is_file()
    assert len(read_labelled_folder(root, sources=("S2",))) == 1
    (root / "images" / "c.jpg").unlink()
    with pytest.raises(DataError, match=r"not in .*images.*\['c'\]"):
        read_labelled_folder(root)
    pd.DataFrame([("a", "cat", "S1")], columns=["image_id", "dx", "source_dataset"]).to_csv(root / "labels.csv")
    with pytest.raises(DataError, match="not HAM10000 codes"):
        read_labelled_folder(root)
    with pytest.raises(DataError, match="no labels.csv"):
        read_labelled_folder(tmp_path)


def _ph2(root: Path, diagnoses: dict[str, int], as_text: bool = True) -> Path:
    for name in diagnoses:
        _image(root / "PH2 Dataset images" / name / f"{name}_Dermoscopic_Image" / f"{name}.bmp",
               "mel" if diagnoses[name] == 2 else "nv", fmt="BMP")
    if as_text:
        lines = ["|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry ||"]
        lines += [f"|| {name} ||     ||   {code}  ||  0  ||" for name, code in diagnoses.items()]
        (root / "PH2_dataset.txt").write_text("\n".join(lines) + "\n")
    return root


def test_ph2_imports_as_nevi_and_melanomas(tmp_path):
    source = _ph2(tmp_path / "PH2Dataset", {"IMD002": 0, "IMD003": 1, "IMD009": 2})
    counts = import_ph2(source, tmp_path / "ph2")
    assert counts == {"nv": 2, "mel": 1}
    folder = read_labelled_folder(tmp_path / "ph2")
    assert dict(zip(folder.table["image_id"], folder.table["dx"])) == {"PH2_IMD002": "nv", "PH2_IMD003": "nv",
                                                                       "PH2_IMD009": "mel"}
    assert set(folder.table["source_dataset"]) == {"PH2"} and folder.table["path"].str.endswith(".bmp").all()
    with pytest.raises(OutputExistsError):
        import_ph2(source, tmp_path / "ph2")


def test_a_ph2_layout_that_does_not_match_names_what_is_missing_and_writes_nothing(tmp_path):
    source = _ph2(tmp_path / "PH2Dataset", {"IMD002": 0, "IMD003": 7})
    with pytest.raises(DataError, match="clinical diagnosis"):
        import_ph2(source, tmp_path / "out")
    assert not (tmp_path / "out" / "labels.csv").exists() and not (tmp_path / "out" / "images").exists()
    with pytest.raises(DataError, match="PH2 Dataset images"):
        import_ph2(tmp_path, tmp_path / "out")


def _derm7pt(root: Path, cases: list[tuple[str, str]]) -> Path:
    meta = []
    for number, (diagnosis, dx) in enumerate(cases):
        derm, clinic = f"Abc/D{number:03d}.jpg", f"Abc/C{number:03d}.jpg"
        _image(root / "release_v0" / "images" / derm, dx or "nv")
        _image(root / "release_v0" / "images" / clinic, dx or "nv")
        meta.append({"case_num": number + 1, "diagnosis": diagnosis, "seven_point_score": 1, "clinic": clinic,
                     "derm": derm})
    (root / "release_v0" / "meta").mkdir(parents=True)
    pd.DataFrame(meta).to_csv(root / "release_v0" / "meta" / "meta.csv", index=False)
    return root


def test_derm7pt_imports_the_dermoscopic_images_maps_the_diagnoses_and_counts_the_rest(tmp_path):
    source = _derm7pt(tmp_path / "derm7pt", [("melanoma (in situ)", "mel"), ("clark nevus", "nv"),
                                             ("reed or spitz nevus", "nv"), ("seborrheic keratosis", "bkl"),
                                             ("basal cell carcinoma", None), ("melanoma metastasis", "mel")])
    counts = import_derm7pt(source, tmp_path / "d7")
    assert counts == {"mel": 2, "nv": 2, "bkl": 1, "left_out": {"basal cell carcinoma": 1}}
    folder = read_labelled_folder(tmp_path / "d7")
    copied = {p.name for p in (tmp_path / "d7" / "images").iterdir()}
    assert len(folder) == 5 and all(n.startswith("derm7pt_") for n in copied)
    first = source / "release_v0" / "images" / "Abc" / "D000.jpg"  # the dermoscopic one, not C000.jpg
    assert (tmp_path / "d7" / "images" / "derm7pt_1.jpg").read_bytes() == first.read_bytes()


def test_pskin_data_import_names_what_it_left_out(tmp_path, capsys):
    source = _derm7pt(tmp_path / "derm7pt", [("clark nevus", "nv"), ("basal cell carcinoma", None),
                                             ("lentigo", None), ("lentigo", None)])
    assert main(["data", "import", "derm7pt", str(source), "--out", str(tmp_path / "d7")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(": nv 1") and "wrote 1 images" in out[0]
    assert out[1] == ("left out 3 image(s), a diagnosis outside the classes pskin imports: basal cell carcinoma 1, "
                      "lentigo 2")


def test_an_unknown_derm7pt_diagnosis_or_a_broken_image_stops_the_import_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="unknown diagnosis 'chilblain'"):
        derm7pt_code("chilblain")
    source = _derm7pt(tmp_path / "derm7pt", [("clark nevus", "nv"), ("melanoma", "mel")])
    (source / "release_v0" / "images" / "Abc" / "D001.jpg").write_text("not an image")
    with pytest.raises(DataError, match="D001.jpg"):
        import_derm7pt(source, tmp_path / "d7")
    assert not (tmp_path / "d7" / "labels.csv").exists()


@pytest.fixture
def isic2017_server():
    """Fake ISIC 2017 Part 3 archives and ground truths: two validation and three test images (plus superpixel
    maps, which the official zips hold too and the import leaves out)."""
    def jpeg(dx: str) -> bytes:
        import io

        buffer = io.BytesIO()
        Image.fromarray(image_bytes_for(dx, "ISIC_0000001", (64, 48))).save(buffer, format="JPEG")
        return buffer.getvalue()

    truth = {"val": [("ISIC_0001000", 1, 0), ("ISIC_0001001", 0, 0)],
             "test": [("ISIC_0002000", 0, 1), ("ISIC_0002001", 1, 0), ("ISIC_0002002", 0, 0)]}
    files = {}
    for part, folder in (("val", "ISIC-2017_Validation_Data"), ("test", "ISIC-2017_Test_v2_Data")):
        entries = {f"{folder}/{i}.jpg": jpeg("mel" if m else "bkl" if k else "nv") for i, m, k in truth[part]}
        entries.update({f"{folder}/{i}_superpixels.png": b"png" for i, _, _ in truth[part]})
        files[f"{folder}.zip"] = zip_bytes(entries)
        name = f"ISIC-2017_{'Validation' if part == 'val' else 'Test_v2'}_Part3_GroundTruth.csv"
        files[name] = ("image_id,melanoma,seborrheic_keratosis\n"
                       + "".join(f"{i},{m}.0,{k}.0\n" for i, m, k in truth[part])).encode()
    with serving(files) as server:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/2017"


def test_the_isic2017_download_becomes_a_labelled_folder_with_nevus_for_neither_flag(isic2017_server, tmp_path):
    server, base = isic2017_server
    download_isic2017(tmp_path / "isic2017", progress=False, base_url=base)
    folder = read_labelled_folder(tmp_path / "isic2017")
    labels = dict(zip(folder.table["image_id"], zip(folder.table["dx"], folder.table["source_dataset"])))
    assert labels == {"ISIC_0001000": ("mel", "ISIC2017_val"), "ISIC_0001001": ("nv", "ISIC2017_val"),
                      "ISIC_0002000": ("bkl", "ISIC2017_test"), "ISIC_0002001": ("mel", "ISIC2017_test"),
                      "ISIC_0002002": ("nv", "ISIC2017_test")}
    assert not any("superpixels" in p.name for p in (tmp_path / "isic2017" / "images").iterdir())
    # The CLI says where it is and how to use it; a second call does not overwrite it.
    assert main(["data", "download", "isic2017", "--data-dir", str(tmp_path / "isic2017"), "--base-url", base,
                 "--quiet"]) == 2


def test_a_missing_isic2017_image_is_named(isic2017_server, tmp_path):
    server, base = isic2017_server
    server.files["ISIC-2017_Test_v2_Data.zip"] = zip_bytes({"ISIC-2017_Test_v2_Data/ISIC_0002000.jpg": b"x"})
    with pytest.raises(DataError, match="ISIC_0002001.jpg"):
        download_isic2017(tmp_path / "isic2017", progress=False, base_url=base)
    assert not (tmp_path / "isic2017" / "labels.csv").exists()


def test_image_statistics_measure_the_shift_between_collections(tmp_path):
    dark = tmp_path / "dark.png"
    pixels = np.full((90, 120, 3), 200, np.uint8)
    pixels[:20, :20] = pixels[:20, -20:] = pixels[-20:, :20] = pixels[-20:, -20:] = 0  # black corners
    Image.fromarray(pixels).save(dark)
    warm = tmp_path / "warm.png"
    Image.fromarray(np.dstack([np.full((100, 100), v, np.uint8) for v in (220, 150, 120)])).save(warm)
    stats = image_statistics([dark, warm], ["A", "B"])
    assert stats.loc[0, "aspect"] == pytest.approx(120 / 90) and stats.loc[0, "corner_ratio"] < 0.1
    assert stats.loc[1, "light_r"] > 1 / 3 > stats.loc[1, "light_b"] and stats.loc[1, "corner_ratio"] == 1
    table = shift_table(stats)
    assert list(table["source_dataset"]) == ["A", "B"] and list(table["dark_corners"]) == [1.0, 0.0]


@pytest.mark.slow
def test_a_run_is_evaluated_per_source_and_pooled_with_thresholds_from_validation(tmp_path):
    data = write_ham_folder(tmp_path / "ham", ham_rows({"mel": 16, "nv": 30, "bkl": 16}))
    run = train(make_config("smoke", data_dir=str(data), image_size=16, epochs=2, batch_size=16, quiet=True,
                            tta=False, threads=1), runs_dir=tmp_path / "runs")
    rows = [(f"E{i}", dx, "S1" if i % 2 else "S2") for i, dx in enumerate(["mel", "nv", "bkl", "df"] * 6)]
    external = _labelled(tmp_path / "external", rows)
    metrics = evaluate_external(run, [external])  # the CLI's number of resamples: the same intervals below
    assert set(metrics["groups"]) == {INTERNAL, "S2", "S1", POOLED}
    assert metrics["left_out"] == {UNKNOWN_CLASS: {"S1/df": 6}}
    pooled = metrics["groups"][POOLED]
    assert pooled["n"] == 18 and set(pooled["bootstrap"]) >= {"balanced_accuracy", "roc_auc", "macro_auc"}
    assert set(pooled["melanoma_operating_points"]) == {"80%", "90%"}
    point = pooled["melanoma_operating_points"]["80%"]
    assert point["threshold"] == metrics["melanoma_thresholds"]["80%"] and point["positives"] == 6
    assert metrics["temperature"] > 0 and len(pooled["calibration"]["reliability"]) == 15
    record = RunRecord.open(run).evaluations()["external"]
    assert record.metrics == metrics and set(record.predictions()["source_dataset"]) == {"S1", "S2"}
    assert main(["evaluate", str(run), "--external", str(external), "--name", "again", "--tta-views",
                 "dihedral"]) == 0
    again = RunRecord.open(run).evaluations()["again"].metrics
    assert again["tta"] == "dihedral" and again["groups"][INTERNAL] == metrics["groups"][INTERNAL]
    # The inspector opens an external evaluation like a run's own test images.
    opened = load_evaluation_predictions(run, "external", [external])
    assert len(opened) == 18 and opened["path"].map(lambda p: Path(p).is_file()).all()
    assert set(opened.columns) >= {"confidence", "loss", "correct", "source_dataset"}
    # The book's methods table reads both evaluations of the record, one row each, per set.
    table = methods_table([run], evaluations=("external", "again"), sets=(INTERNAL, "S1", "S2"))
    assert list(table["evaluation"]) == ["external", "again"] and list(table["views"]) == ["none", "dihedral"]
    assert table.loc[0, "S1 balanced_accuracy"] == metrics["groups"]["S1"]["balanced_accuracy"]
    assert table.loc[0, "ece"] == metrics["groups"]["S2"]["calibration"]["ece"]


# ---------------------------------------------------------------------------------------------------------------
# Images an evaluation leaves out: counted by reason, recorded and printed, never dropped silently


def test_images_a_run_cannot_be_scored_on_are_counted_by_reason(tmp_path):
    rows = [("A1", "mel", "S1"), ("A2", "nv", "S1"), ("A3", "df", "S1"), ("A4", "df", "S1"), ("A5", "nv", "S1"),
            ("B1", "mel", "T"), ("B2", "df", "T")]
    folder = _labelled(tmp_path / "set", rows)
    (folder / "images" / "A5.jpg").write_bytes(b"not a JPEG at all")
    table = read_labelled_folder(folder).table
    kept, left_out, names = leave_out(table, ("mel", "nv", "bkl"), trained_on=("T",))
    assert list(kept["image_id"]) == ["A1", "A2"]
    # The first reason that applies counts: T's dermatofibroma is a collection the run trained on.
    assert left_out == {TRAINED_ON: {"T/mel": 1, "T/df": 1}, UNKNOWN_CLASS: {"S1/df": 2}, UNREADABLE: {"S1/nv": 1}}
    assert names == {TRAINED_ON: ["B1", "B2"], UNKNOWN_CLASS: ["A3", "A4"], UNREADABLE: ["A5"]}
    _, by_class, _ = leave_out(table.drop(columns="source_dataset"), ("mel", "nv", "bkl"))  # a plain image_id,dx CSV
    assert by_class == {UNKNOWN_CLASS: {"df": 3}, UNREADABLE: {"nv": 1}}


def test_left_out_images_are_named_the_first_ten_then_counted():
    ids = [f"ISIC_{i:07d}" for i in range(12)]
    metrics = {"left_out": {UNREADABLE: {"ISIC2017_val/nv": 12}, UNKNOWN_CLASS: {"ISIC2017_val/df": 1}},
               "left_out_images": {UNREADABLE: ids, UNKNOWN_CLASS: ["ISIC_0099999"]}}
    assert left_out_lines(metrics) == [
        "left out 12 image(s), unreadable image: ISIC2017_val/nv 12; image ids " + ", ".join(ids[:10])
        + " and 2 more",
        "left out 1 image(s), class the run does not know: ISIC2017_val/df 1; image ids ISIC_0099999"]
    # A record written before the ids were kept is still said, without them.
    assert left_out_lines({"left_out": {"S1/df": 6}}) == [f"left out 6 image(s), {REASON_NOT_RECORDED}: S1/df 6"]


def test_left_out_counts_of_older_records_are_read_as_reason_not_recorded():
    assert left_out_by_reason({"left_out": {"S1/df": 6}}) == {REASON_NOT_RECORDED: {"S1/df": 6}}
    assert left_out_by_reason({"left_out": {}}) == {} and left_out_by_reason({}) == {}
    assert left_out_by_reason({"left_out": {UNKNOWN_CLASS: {"S1/df": 6}}}) == {UNKNOWN_CLASS: {"S1/df": 6}}


def test_evaluate_scores_the_known_classes_and_prints_what_it_left_out(small_run, tmp_path, capsys):
    run, _ = small_run
    rows = [(f"E{i}", dx, "S1") for i, dx in enumerate(["mel", "nv", "bkl", "df", "nv"] * 2)]
    folder = _labelled(tmp_path / "set", rows)
    (folder / "images" / "E9.jpg").write_bytes(b"not a JPEG at all")
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["image_id", "dx", "source_dataset"])[["image_id", "dx"]].to_csv(labels, index=False)

    assert main(["evaluate", str(run), "--images", str(folder / "images"), "--labels", str(labels), "--out",
                 str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 images:")
    assert "left out 2 image(s), class the run does not know: df 2; image ids E3, E8" in out
    assert "left out 1 image(s), unreadable image: nv 1; image ids E9" in out
    metrics = RunRecord(tmp_path / "eval").metrics
    assert metrics["left_out"] == {UNKNOWN_CLASS: {"df": 2}, UNREADABLE: {"nv": 1}}
    assert metrics["left_out_images"] == {UNKNOWN_CLASS: ["E3", "E8"], UNREADABLE: ["E9"]}

    assert main(["evaluate", str(run), "--external", str(folder), "--name", "left-out"]) == 0
    out = capsys.readouterr().out
    assert "left out 2 image(s), class the run does not know: S1/df 2; image ids E3, E8" in out
    assert "left out 1 image(s), unreadable image: S1/nv 1; image ids E9" in out
    metrics = RunRecord.open(run).evaluations()["left-out"].metrics
    assert metrics["images"] == 7 and metrics["left_out"] == {UNKNOWN_CLASS: {"S1/df": 2}, UNREADABLE: {"S1/nv": 1}}
