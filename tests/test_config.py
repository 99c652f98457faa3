"""Parameters are validated before any work starts, from Python, YAML and the CLI alike."""

from __future__ import annotations

import pytest

from pskinlib.cli import main
from pskinlib.train.config import PROFILES, load_yaml_config, make_config


def test_profiles_build_valid_configs():
    for profile in PROFILES:
        config = make_config(profile)
        assert config.profile == profile
    paper = make_config("paper")
    assert (paper.model, paper.image_size, paper.epochs, paper.protocol) == ("resnet101", 224, 100, "paper")
    assert make_config("paper", model="efficientnet_b0").model == "efficientnet_b0"


@pytest.mark.parametrize("name, value", [
    ("epochs", -1), ("epochs", 2.5), ("image_size", 0), ("batch_size", 1), ("lr", 0), ("lr", float("nan")),
    ("model", "vgg16"), ("classes", ("mel", "cat")), ("protocol", "random"), ("fractions", (0.5, 0.5, 0.5)),
    ("class_weights", "median"), ("optimizer", "adam"), ("select_metric", "f1"), ("precision", "fp16"),
    ("augment", "yes"), ("warmup_epochs", 50), ("device", "tpu"), ("effective_beta", 1.0), ("colour_jitter", -0.1),
    ("colour_jitter", 1.5),
])
def test_bad_values_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        make_config("quick", **{name: value})


def test_manual_weights_need_one_value_per_class():
    assert make_config(class_weights="manual", manual_weights=[1, 2, 3]).manual_weights == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="manual_weights"):
        make_config(class_weights="manual", manual_weights=[1, 2])


def test_unknown_parameters_and_profiles_are_errors():
    with pytest.raises(ValueError, match="unknown parameter.*learning_rate"):
        make_config(learning_rate=0.1)
    with pytest.raises(ValueError, match="profile"):
        make_config("huge")


def test_yaml_config_with_profile_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("profile: smoke\nepochs: 3\nclasses: [mel, nv]\n")
    config = load_yaml_config(path, lr=0.01)
    assert (config.profile, config.epochs, config.classes, config.lr) == ("smoke", 3, ("mel", "nv"), 0.01)
    path.write_text("epochs: [3\n")
    with pytest.raises(ValueError, match="YAML"):
        load_yaml_config(path)
    path.write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="unknown parameter"):
        load_yaml_config(path)


def test_cli_rejects_bad_parameters_before_reading_any_data(tmp_path, capsys):
    missing = str(tmp_path / "no-data")
    assert main(["train", "--data-dir", missing, "--epochs", "-3"]) == 2
    assert "epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--profile", "huge"])
    with pytest.raises(SystemExit):
        main(["train", "--image-size", "big"])


def test_every_parameter_is_documented_once_beside_its_field_with_a_group():
    import dataclasses

    from pskinlib.train.config import GROUPS, TrainConfig

    fields = dataclasses.fields(TrainConfig)
    undocumented = [f.name for f in fields if not (isinstance(f.metadata.get("help"), str)
                                                    and len(f.metadata["help"].split()) >= 3)]
    assert not undocumented, f"TrainConfig fields without help (give them param(default, group, help)): " \
                             f"{undocumented}"
    ungrouped = [f.name for f in fields if f.metadata.get("group") not in GROUPS]
    assert not ungrouped, f"TrainConfig fields without a group among {list(GROUPS)}: {ungrouped}"
    assert {f.metadata["group"] for f in fields} == set(GROUPS)  # no group stays empty
    for f in fields:  # a field with choices takes only those, and its default is one of them
        if f.metadata.get("choices"):
            assert f.default in f.metadata["choices"]
            with pytest.raises(ValueError, match=f.name):
                make_config(**{f.name: "no-such-choice"})


def test_a_config_written_as_yaml_reads_back_to_the_same_config(tmp_path):
    config = make_config("paper", model="efficientnet_b0", classes=("mel", "nv"), manual_weights=(1, 2),
                         class_weights="manual", crop_scale=(0.5, 1.0), colour_constancy=6.0)
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_yaml_config(path) == config
