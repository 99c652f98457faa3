"""The ``pskin`` command line as a user runs it: the ``data`` commands, the choices and defaults it offers, and
``pskin train``'s documented flags and ``--print-config``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pskinlib.cli import build_parser, main
from pskinlib.data.labelled_folders import IMPORTERS
from pskinlib.data.splits import PROTOCOLS
from pskinlib.info import DOWNLOAD_SOURCES, PAPER_CLASSES, PAPER_TABLE1
from pskinlib.runs import RunRecord
from pskinlib.train.config import GROUPS, TTA_VIEWS, TrainConfig, load_yaml_config, make_config


def test_summary_prints_counts_per_split_and_class(tiny_ham, capsys):
    assert main(["data", "summary", "--data-dir", str(tiny_ham)]) == 0
    out = capsys.readouterr().out
    assert "grouped split" in out and "repeats" in out and "lesions" in out


def test_split_writes_a_csv_that_records_every_image(tiny_ham, tmp_path, capsys):
    out = tmp_path / "split.csv"
    assert main(["data", "split", "--data-dir", str(tiny_ham), "--seed", "2", "--out", str(out)]) == 0
    split = pd.read_csv(out)
    assert list(split.columns) == ["image_id", "lesion_id", "dx", "split"]
    assert split["image_id"].nunique() == len(split)


def test_prepare_reports_the_time_it_took(tiny_ham, tmp_path, capsys):
    assert main(["data", "prepare", "--data-dir", str(tiny_ham), "--size", "16", "--cache-dir", str(tmp_path),
                 "--quiet"]) == 0
    assert "16x16" in capsys.readouterr().out


def test_user_errors_are_one_line_messages_not_tracebacks(tiny_ham, tmp_path, capsys):
    assert main(["data", "summary", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "pskin: error: No HAM10000 folder" in capsys.readouterr().err
    assert main(["data", "summary", "--data-dir", str(tiny_ham), "--classes", "mel,cat"]) == 2
    assert "unknown class code" in capsys.readouterr().err
    assert main(["data", "summary", "--data-dir", str(tiny_ham), "--fractions", "0.5,0.2,0.2"]) == 2
    assert "must sum to 1" in capsys.readouterr().err


def _printed_counts(out: str) -> dict[tuple[str, str], int]:
    """(split, dx) -> images, read back from the summary table as printed."""
    counts, split = {}, None
    for line in out.splitlines():
        tokens = line.split()
        if tokens and tokens[0] in PAPER_TABLE1:
            split, tokens = tokens[0], tokens[1:]
        if split and len(tokens) == 5 and tokens[0] in PAPER_TABLE1["train"]:
            counts[(split, tokens[0])] = int(tokens[1])
    return counts


def test_real_summary_with_paper_protocol_prints_table_1(real_data_dir, capsys):
    assert main(["data", "summary", "--data-dir", str(real_data_dir), "--protocol", "paper"]) == 0
    out = capsys.readouterr().out
    expected = {(split, dx): n for split, row in PAPER_TABLE1.items() for dx, n in row.items()}
    assert _printed_counts(out) == expected
    assert "repeats" in out


def _action(parser: argparse.ArgumentParser, *commands: str, dest: str) -> argparse.Action:
    """The argument ``dest`` of the subcommand ``commands`` (e.g. "data", "split")."""
    for name in commands:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return next(a for a in parser._actions if a.dest == dest)


def test_the_command_line_offers_the_librarys_own_choices_and_defaults():
    parser = build_parser()
    assert _action(parser, "data", "split", dest="protocol").choices == PROTOCOLS
    assert _action(parser, "data", "summary", dest="protocol").default == TrainConfig.protocol
    fractions = _action(parser, "data", "summary", dest="fractions").default
    assert tuple(float(f) for f in fractions.split(",")) == TrainConfig.fractions
    assert _action(parser, "evaluate", dest="tta_views").choices == TTA_VIEWS
    assert list(_action(parser, "data", "download", dest="dataset").choices) == list(DOWNLOAD_SOURCES)
    assert list(_action(parser, "data", "import", dest="dataset").choices) == list(IMPORTERS)
    classes = _action(parser, "data", "summary", dest="classes")
    assert classes.default == ",".join(PAPER_CLASSES) and ",".join(PAPER_CLASSES) in classes.help


def test_options_that_another_way_of_evaluating_ignores_are_refused(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--external", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--external" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--images", str(tmp_path), "--labels", "l.csv", "--tta-views",
                 TTA_VIEWS[0]]) == 2
    assert "--tta-views go with --external" in capsys.readouterr().err


def _train_help(capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_train_help_explains_every_flag_with_its_default_in_its_group(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    out = _train_help(capsys)
    flat = "".join(out.split())  # argparse wraps the help: compare without the line breaks
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
        assert "".join(f.metadata["help"].split()) in flat, f"{flag}: its help is not shown"
    titles = [line.rstrip(":") for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert titles[-len(GROUPS):] == list(GROUPS)  # after argparse's own options, in the config's order
    # Each flag sits in its field's group, with the default after its help.
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    groups = {a.dest: g.title for g in train._action_groups for a in g._group_actions}
    for f in dataclasses.fields(TrainConfig):
        assert groups[f.name] == f.metadata["group"], f.name
    assert "peak learning rate, reached at the end of the warm-up (default: 0.003)" in " ".join(out.split())
    assert "(default: mel,nv,bkl)" in out and "--class-weights {none,inverse,sqrt_inverse,effective,manual}" in out


def test_print_config_shows_a_profiles_resolved_values_and_reads_no_data(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "--profile", "paper", "--model", "efficientnet_b0", "--data-dir", str(tmp_path / "no-data"),
            "--runs-dir", str(runs), "--print-config"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    values = yaml.safe_load(out)
    assert values["profile"] == "paper" and values["model"] == "efficientnet_b0" and values["epochs"] == 100
    assert list(values) == [f.name for f in dataclasses.fields(TrainConfig)]  # every parameter, in order
    assert not runs.exists()  # nothing made, nothing read
    saved = tmp_path / "resolved.yaml"
    saved.write_text(out)
    assert load_yaml_config(saved) == make_config("paper", model="efficientnet_b0", data_dir=str(tmp_path / "no-data"))
    # A bad value is refused as training would refuse it.
    assert main([*argv, "--lr", "0"]) == 2
    assert "lr: expected a positive number" in capsys.readouterr().err


def test_print_config_with_resume_shows_the_runs_own_values(capsys):
    record = next(p.parent for p in sorted((Path(__file__).resolve().parents[1] / "book" / "results")
                                            .rglob("config.json")))
    assert main(["train", "--resume", str(record), "--print-config"]) == 0
    values = yaml.safe_load(capsys.readouterr().out)
    assert values == yaml.safe_load(RunRecord.open(record).config.to_yaml())
