"""The ``pskin data`` commands, as a user runs them."""

from __future__ import annotations

import pandas as pd

from pskinlib.cli import main
from pskinlib.info import PAPER_TABLE1


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
