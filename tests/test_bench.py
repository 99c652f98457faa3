"""The benchmarks run and return sane figures. Speed targets are met in `pskin bench`, not asserted here."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from benchmarks import bench
from pskinlib.data.ham10000 import load_ham10000
from pskinlib.train.config import make_config
from pskinlib.train.trainer import train

TINY_PLAN = dict(
    input_sizes=(16,), input_batches=2, batch_size=8,
    efficiency_cases=(("resnet18", 16),), efficiency_steps=1, efficiency_rounds=1,
    precision_models=("resnet18",), precision_sizes=(24,), precision_batch=4, precision_steps=1,
    accuracy_epochs=1, accuracy_batches=1,
    scaling_images=(8, 16), scaling_sizes=(16,), scaling_size_images=16, cache_sizes=(16,),
    inference_images=6, inference_single=1,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # The machine may be shared: one thread keeps these small runs quick and steady.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def images(tiny_ham):
    return load_ham10000(tiny_ham)


def numbers(value):
    """Every number inside a nested result."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return []


def assert_sane(result):
    json.dumps(result)  # plain, JSON-serialisable values only
    assert all(math.isfinite(n) for n in numbers(result))


def test_machine_description_names_the_cpu_and_the_libraries():
    machine = bench.machine_description()
    assert machine["cpu_model"] and machine["logical_cpus"] >= 1 and machine["torch_threads"] >= 1
    assert machine["torch"] == torch.__version__ and isinstance(machine["avx512_bf16"], bool)
    assert_sane(machine)


def test_input_pipeline_compares_the_cache_with_the_usual_loader(images):
    result = bench.bench_input_pipeline(images, 16, batch_size=8, n_batches=2, workers=1)
    assert result["pskin"]["images_per_second"] > 0 and result["usual"]["images_per_second"] > 0
    assert result["usual"]["startup_seconds"] > 0 and result["speedup"] > 0
    assert_sane(result)


def test_input_pipeline_says_when_the_split_is_too_small(images):
    with pytest.raises(ValueError, match="n_batches"):
        bench.bench_input_pipeline(images, 16, batch_size=8, n_batches=1000, workers=0)


def test_usual_transform_gives_normalised_images_of_the_asked_size(tiny_ham):
    from PIL import Image

    image = Image.open(next((tiny_ham / "images").iterdir())).convert("RGB")
    tensor = bench.usual_transform(24, bench.Augmentation())(image)
    assert tensor.shape == (3, 24, 24) and tensor.dtype == torch.float32 and tensor.min() < 0


def test_raw_training_speed_uses_the_trainers_precision_choice():
    config = make_config("default", image_size=16, batch_size=4, precision="fp32", channels_last=True)
    result = bench.raw_training_speed(config, 1, warmup_steps=1)
    assert result["precision"] == "fp32" and result["channels_last"] is True and result["images_per_second"] > 0
    with pytest.raises(ValueError, match="n_steps"):
        bench.raw_training_speed(config, 0)


def test_training_efficiency_reports_trainer_raw_and_usual_side_by_side(images):
    result = bench.bench_training_efficiency(images, "resnet18", 16, batch_size=8, n_steps=1, rounds=1, workers=0)
    for key in ("raw_images_per_second", "trainer_images_per_second", "usual_images_per_second",
                "typical_images_per_second", "trainer_vs_raw", "trainer_vs_usual", "trainer_vs_typical"):
        assert result[key] > 0, key
    assert result["epoch_seconds"]["trainer"] > 0 and result["training_images"] > 0
    assert_sane(result)


def test_precision_layouts_measure_every_variant_and_the_automatic_choice():
    result = bench.bench_precision_layouts(["resnet18"], [24], batch_size=4, n_steps=1, warmup_steps=0)
    assert len(result["rows"]) == len(bench._variants())
    (choice,) = result["choices"]
    assert 0 < choice["auto_vs_fastest"] <= 1
    assert_sane(result)


@pytest.mark.slow
def test_precision_accuracy_check_trains_fp32_and_bf16(images, tmp_path):
    result = bench.bench_precision_accuracy(images, size=24, epochs=1, max_train_batches=1, runs_dir=tmp_path)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert 0 <= result["fp32"]["val_balanced_accuracy"] <= 1 and 0 <= result["bf16"]["val_balanced_accuracy"] <= 1
    assert isinstance(result["holds"], bool) and "small check" in result["note"]
    assert_sane(result)


@pytest.mark.slow
def test_scaling_measures_epochs_against_images_and_size_and_the_cache(images):
    result = bench.bench_scaling(images, size=16, batch_size=8, n_images=(8, 16), sizes=(16, 24), size_images=16,
                                 cache_sizes=(16,))
    assert [r["images"] for r in result["epoch_vs_images"]] == [8, 16]
    assert [r["size"] for r in result["epoch_vs_size"]] == [16, 24]
    (cache,) = result["cache_preparation"]
    assert cache["images"] == len(images) and cache["seconds"] > 0
    assert result["default_profile_estimate"]["training_seconds"] > 0
    assert_sane(result)


def test_inference_times_evaluate_and_one_prediction(images, tmp_path):
    run = train(make_config("smoke", data_dir=str(images.root), image_size=16, epochs=1, batch_size=16,
                            max_train_batches=1, quiet=True, tta=False), runs_dir=tmp_path)
    result = bench.bench_inference(run, images, n_images=6, n_single=2)
    assert result["evaluate_images_per_second"] > 0 and result["single_latency_ms"]["median"] > 0
    assert result["n_images"] == 6
    assert_sane(result)


@pytest.mark.slow
def test_run_benchmarks_writes_every_section_and_a_summary(tiny_ham, tmp_path, monkeypatch):
    monkeypatch.setitem(bench.PLANS, "quick", TINY_PLAN)
    out = tmp_path / "results" / "benchmarks.json"
    results = bench.run_benchmarks(tiny_ham, out, quick=True, workers=0, log=None)
    written = json.loads(out.read_text())
    assert set(written["sections"]) == set(bench.SECTIONS) and written["mode"] == "quick"
    assert written["machine"]["cpu_model"] and written["started"] and written["finished"]
    assert {"input_speedup", "trainer_vs_raw", "trainer_vs_usual", "auto_vs_fastest",
            "evaluate_images_per_second", "single_prediction_ms"} <= set(written["summary"])
    assert "run_dir" not in json.dumps(written)  # temporary folders are not recorded
    assert bench.format_summary(results).count("\n") >= 5
    assert_sane(written)

    # One section again: the others are kept from the file.
    before = written["sections"]["scaling"]
    again = bench.run_benchmarks(tiny_ham, out, quick=True, sections=["input_pipeline"], workers=0, log=None)
    assert again["sections"]["scaling"] == before and again["sections"]["input_pipeline"]["finished"]


@pytest.mark.parametrize("arguments, match", [(dict(sections=["nonsense"]), "sections"),
                                              (dict(out_path="results.txt"), "out_path"),
                                              (dict(threads=0), "threads"),
                                              (dict(quick="yes"), "quick")])
def test_run_benchmarks_refuses_bad_parameters_before_any_work(tiny_ham, arguments, match):
    with pytest.raises(ValueError, match=match):
        bench.run_benchmarks(tiny_ham, **{"out_path": "x.json", **arguments}, log=None)


def test_a_results_file_under_a_file_is_one_error_line_before_any_work(tiny_ham, tmp_path, capsys):
    from pskinlib.cli import main

    (tmp_path / "afile").write_text("a regular file, where a folder would have to be")
    out = tmp_path / "afile" / "results" / "benchmarks.json"
    assert main(["bench", "--data-dir", str(tiny_ham), "--out", str(out), "--quick", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pskin: error: out_path: cannot make the folder") and "afile is a file" in err
    assert len(err.splitlines()) == 1


def test_bench_subcommand_parses_its_arguments():
    parser = argparse.ArgumentParser()
    bench.add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--quick", "--only", "scaling", "inference", "--threads", "2",
                              "--workers", "0", "--out", "r.json"])
    assert args.func is bench.cmd_bench and args.quick and args.only == ["scaling", "inference"]
    assert (args.threads, args.workers, args.out, args.data_dir) == (2, 0, "r.json", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--only", "nonsense"])


def test_pskin_bench_loads_the_benchmarks_from_the_checkout(capsys):
    from pskinlib.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0 and "--quick" in capsys.readouterr().out
