"""The build's time table: each step with its seconds, summed per stage and step, in words and on file."""

from __future__ import annotations

import json
import time

import pytest

from book.build_times import (
    read_build_times,
    time_finding,
    time_lines,
    time_table,
    time_view,
    took,
    write_build_times,
)
from book.format import describe_machine
from pskinlib.errors import ParameterError

STEPS = [{"stage": "runs", "step": "training", "what": "resnet18 a", "seconds": 120.0},
         {"stage": "runs", "step": "external evaluation", "what": "resnet18 a", "seconds": 30.0},
         {"stage": "runs", "step": "training", "what": "resnet18 b", "seconds": 240.0},
         {"stage": "chapters", "step": "executed", "what": "01_data", "seconds": 60.0},
         {"stage": "chapters", "step": "reused", "what": "04_results", "seconds": 0.0},
         {"stage": "rendering", "step": "HTML", "what": "the book", "seconds": 150.0}]


def test_the_table_sums_each_step_in_the_build_s_order_and_names_the_slowest():
    table = time_table(STEPS)
    assert list(zip(table["stage"], table["step"])) == [
        ("runs", "training"), ("runs", "external evaluation"), ("chapters", "executed"), ("chapters", "reused"),
        ("rendering", "HTML"), ("total", "")]
    training = table.iloc[0]
    assert training["items"] == 2 and training["minutes"] == pytest.approx(6.0)
    assert training["share"] == pytest.approx(360 / 600) and training["slowest"] == "resnet18 b (4.0 min)"
    assert table.iloc[-1]["minutes"] == pytest.approx(10.0) and table.iloc[-1]["items"] == 6
    assert time_view(table)["minutes"].tolist()[:2] == ["6.0", "0.5"]
    lines = time_lines(STEPS)
    assert lines[0] == "Where the time went:" and "runs: training" in lines[1] and "6.0 min" in lines[1]
    assert lines[-1].split()[:2] == ["total", "6"]


def test_the_finding_says_runs_training_chapters_rendering_and_the_slowest_step():
    words = time_finding(STEPS)
    assert words.startswith("10.0 min in all, 6.5 making the runs (6.0 of them training), 1.0 running the chapters, "
                            "2.5 rendering")
    assert words.endswith("the slowest step was resnet18 b (training, 4.0 min)")
    assert time_finding([]) == "no step of a build is recorded"
    assert time_table([]).empty


def test_steps_side_by_side_count_the_time_during_which_one_of_them_ran():
    side_by_side = [{"stage": "appearance", "step": "measured", "what": "HAM10000 (10015 images)", "seconds": 90.0},
                    {"stage": "chapters", "step": "executed", "what": "01_data", "seconds": 60.0, "began": 0.0},
                    {"stage": "chapters", "step": "executed", "what": "05_external", "seconds": 30.0, "began": 10.0},
                    {"stage": "chapters", "step": "executed", "what": "06_clinical", "seconds": 30.0, "began": 50.0},
                    {"stage": "chapters", "step": "executed", "what": "intro", "seconds": 10.0, "began": 100.0}]
    table = time_table(side_by_side).set_index(["stage", "step"])
    # 0-60 and 10-40 and 50-80 overlap into 0-80, then 100-110: 90 s of the build's 130 s of chapter time
    assert table.loc[("chapters", "executed"), "minutes"] == pytest.approx(1.5)
    assert table.loc[("chapters", "executed"), "items"] == 4
    assert table.loc[("total", ""), "minutes"] == pytest.approx(3.0)
    assert table.loc[("appearance", "measured"), "share"] == pytest.approx(0.5)
    assert time_finding(side_by_side).startswith("3.0 min in all, 1.5 measuring the images' appearance, 1.5 running "
                                                 "the chapters (two at a time)")
    began = time.perf_counter()
    steps = []
    took(steps, "chapters", "executed", "02_two", began, origin=began - 5)
    assert steps[0]["began"] == pytest.approx(5.0)


def test_steps_are_timed_kept_on_file_and_read_back(tmp_path):
    steps = []
    began = time.perf_counter()
    took(steps, "chapters", "executed", "02_two", began)
    took(None, "chapters", "executed", "not kept", began)  # no list: nothing to keep
    assert len(steps) == 1 and steps[0]["what"] == "02_two" and steps[0]["seconds"] >= 0
    with pytest.raises(ParameterError, match="stage: expected one of"):
        took(steps, "chapter", "executed", "x", began)
    path = write_build_times(tmp_path / "build" / "times.json", "smoke", {"cpu_model": "CPU"}, steps)
    assert read_build_times(path)["steps"] == steps and read_build_times(path)["profile"] == "smoke"
    (tmp_path / "other.json").write_text(json.dumps({"steps": [{"stage": "runs"}]}))
    with pytest.raises(ParameterError, match="not a build's time table"):
        read_build_times(tmp_path / "other.json")
    with pytest.raises(ParameterError, match="cannot read"):
        read_build_times(tmp_path / "missing.json")


def test_a_machine_is_described_with_what_decides_its_training_speed():
    machine = {"cpu_model": "Intel Xeon", "usable_cpus": 2, "memory_gib": 23.5, "avx512_bf16": False,
               "gpu": None, "torch": "2.14.1"}
    assert describe_machine(machine) == ("Intel Xeon, 2 usable CPUs, 23.5 GiB, no BF16 (fp32 training), "
                                         "torch 2.14.1")
    assert "AVX-512 BF16 (bf16 training)" in describe_machine({**machine, "avx512_bf16": True})
    assert describe_machine({}) == "an unknown CPU"
