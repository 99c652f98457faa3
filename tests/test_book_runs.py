"""The book's runs: planned from the chapters' parameters, made in one stage that says what it did, and only read by
the chapters, which fail with a clear message instead of training when a run is missing."""

from __future__ import annotations

import pytest

from book import BookBuildError
from book.build import book_chapters, planned_runs
from book.runs import chapter_configs, find_run, need_run, produce, training_config
from book.tables import ablation_runs, fusion_table, run_to_inspect
from pskinlib.train.config import PROFILES

SMALL = {"image_size": 16, "epochs": 1, "batch_size": 16, "threads": 1}


def test_each_book_profile_names_training_profiles_without_changing_them():
    """A profile's name means one thing: the chapters pass the training profile's name, never its values again."""
    for profile in ("smoke", "quick", "paper"):
        for chapter in book_chapters(profile, "DATA", "RUNS"):
            for name in ("profile", "pretrained_profile"):
                if name in chapter.parameters and chapter.notebook != "results.ipynb":
                    assert chapter.parameters[name] in PROFILES, (profile, chapter.output)
            assert not chapter.parameters.get("train_overrides") and not chapter.parameters.get("pretrained_overrides")
    planned = planned_runs(book_chapters("quick", "DATA", "RUNS"))
    scratch = next(c for c in planned if c.model == "resnet18")
    assert (scratch.profile, scratch.image_size, scratch.epochs) == ("quick", 48, 4)


def test_the_chapters_plan_one_run_per_network_and_scheme():
    planned = {(c.model, c.pretrained, c.class_weights) for c in planned_runs(book_chapters("smoke", "DATA", "RUNS"))}
    assert planned == {("resnet18", False, "inverse"), ("resnet18", False, "none"), ("efficientnet_b0", False,
                       "inverse"), ("efficientnet_b0", False, "none"), ("efficientnet_lite0", True, "inverse"),
                       ("efficientnet_lite0", True, "none")}
    assert chapter_configs({"data_dir": "DATA", "runs_dir": "RUNS"}) == []


@pytest.mark.slow
def test_the_runs_stage_trains_once_fuses_the_paper_weighted_runs_and_the_tables_only_read(tiny_ham, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.delenv("PSKIN_ISIC2017", raising=False)  # CI sets it; with no external folder none is evaluated
    runs_dir = tmp_path / "runs"
    weighted = training_config(profile="smoke", model="resnet18", class_weights="inverse", data_dir=tiny_ham,
                               train_overrides=SMALL)
    plain = training_config(profile="smoke", model="resnet18", class_weights="none", data_dir=tiny_ham,
                            train_overrides=SMALL)
    with pytest.raises(BookBuildError, match="no run of resnet18 .*python -m book") as error:
        need_run(weighted, runs_dir)  # a chapter never trains: it names the command that does
    assert "pskin train --profile smoke --image-size 16 --epochs 1 --batch-size 16 --threads 1" in str(error.value)
    with pytest.raises(BookBuildError, match="no finished run of resnet18"):
        run_to_inspect(runs_dir=runs_dir, model="resnet18")
    logs, steps = [], []
    made = produce([weighted, plain, weighted], runs_dir, data_dir=tiny_ham, external_dirs=(), log=logs.append,
                   steps=steps)
    assert [step["step"] for step in steps] == ["training", "head refit", "metadata fusion", "training"]
    assert all(step["stage"] == "runs" and step["seconds"] > 0 for step in steps)
    done = [line for line in logs if line.startswith("  run ") and not line.endswith(": training")]
    assert len(made) == 2 and len(done) == 2  # the same config planned twice is one run
    assert "trained" in done[0] and "fused" in done[0] and "refitted" in done[0]
    assert "trained" in done[1] and "fused" not in done[1]  # no weights: not the paper's weighted procedure
    # each step is said as it starts: the training with a line per epoch, then the refit and the fusion
    first = logs[:logs.index(done[0])]
    assert first[0].endswith(": training") and first[1].startswith("    epoch 1/1: validation balanced accuracy")
    assert first[2:] == ["    refitting the head", "    fusing age, sex and body site"]
    assert need_run(weighted, runs_dir) == made[0] and find_run(plain, runs_dir) == made[1]
    assert made[0].fusion(True).finished and made[0].fusion(False).finished and not made[1].fusion(True).finished
    row = fusion_table([made[0]]).iloc[0]
    assert row["+ metadata"] == made[0].fusion(True).metrics["test"]["balanced_accuracy"]
    with pytest.raises(BookBuildError, match="no fusion-image/ head: `python -m book` fits it"):
        fusion_table([made[1]])  # a table reads heads; it does not fit one
    ablation = ablation_runs("inverse", runs_dir=runs_dir, data_dir=tiny_ham, models=["resnet18"], profile="smoke",
                             train_overrides=SMALL, pretrained_profile="smoke_pretrained")
    assert set(ablation.values()) == set(made)
    logs.clear()
    steps.clear()
    produce([weighted, plain], runs_dir, data_dir=tiny_ham, log=logs.append, steps=steps)
    assert all(": reused" in line for line in logs) and len(list(runs_dir.iterdir())) == 2
    assert [step["step"] for step in steps] == ["reused", "reused"]
