"""TrainerConfig: defaults, round trips, a stable hash, and clear validation errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training.trainers.config import DEFAULT_TEMPLATE, TrainerConfig


def make(**changes):
    data = {"kind": "reward", "base_model": "/models/base", "output_dir": "/jobs/1"} | changes
    return TrainerConfig.from_dict(data)


def test_defaults_match_the_design():
    cfg = make()
    assert cfg.max_length == 512
    assert cfg.l2_coeff == 0.001
    assert (
        cfg.template == DEFAULT_TEMPLATE == "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"
    )
    assert cfg.bf16 is False and cfg.fp16 is False
    assert cfg.num_gpus == 1
    assert cfg.format_text("Hi?", " Hello.") == "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT: Hello."


def test_round_trip_through_json():
    cfg = make(kind="cost", learning_rate=1e-5, epochs=1, template="Q: {prompt}\nA: {response}")
    again = TrainerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.hash() == cfg.hash()


def test_hash_is_stable_sha256_and_ignores_where_the_run_writes():
    cfg = make()
    assert len(cfg.hash()) == 64
    assert cfg.hash() == make().hash()
    reordered = TrainerConfig.from_dict(dict(reversed(list(cfg.to_dict().items()))))
    assert reordered.hash() == cfg.hash()
    assert make(output_dir="/elsewhere", logging_steps=1, save_steps=7).hash() == cfg.hash()
    assert make(learning_rate=3e-5).hash() != cfg.hash()
    assert make(kind="cost").hash() != cfg.hash()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "policy"}, "kind: must be one of reward, cost"),
        ({"base_model": ""}, "base_model: a local checkpoint path is required"),
        ({"learning_rate": 0}, "learning_rate: must be in (0, 1]"),
        ({"learning_rate": "fast"}, "learning_rate: must be a number"),
        ({"per_device_batch_size": 0}, "per_device_batch_size: must be between 1 and 4096"),
        ({"per_device_batch_size": True}, "per_device_batch_size: must be an integer"),
        ({"epochs": 0}, "epochs: must be in (0, 1000]"),
        ({"max_steps": 0}, "max_steps: must be -1 or positive"),
        ({"max_length": 4}, "max_length: must be between 8 and 32768"),
        ({"warmup_ratio": 1.0}, "warmup_ratio: must be in [0, 1)"),
        ({"eval_split": -0.1}, "eval_split: must be in [0, 1)"),
        ({"lr_scheduler": "exotic"}, "lr_scheduler: must be one of"),
        ({"bf16": True, "fp16": True}, "choose at most one mixed precision"),
        ({"bf16": "yes"}, "bf16: must be true or false"),
        ({"template": "{prompt} only"}, "template: must contain {response} exactly once"),
        ({"template": "{prompt} {response} {system}"}, "unknown placeholder {system}"),
        ({"template": "{prompt} {response} {"}, "template: not a valid format string"),
        ({"template": "{prompt}{prompt}{response}"}, "template: must contain {prompt} exactly once"),
        ({"deepspeed": "ds.json", "fsdp": "full_shard", "num_gpus": 2}, "choose one of DeepSpeed and FSDP"),
        ({"fsdp": "full_shard"}, "fsdp: needs num_gpus of 2 or more"),
        ({"fsdp_config": "fsdp.json"}, "fsdp_config: needs fsdp options"),
        ({"l2_coeff": -1}, "l2_coeff: must be in [0, 10]"),
    ],
)
def test_validation_errors_name_the_field(changes, message):
    with pytest.raises(ValueError) as excinfo:
        make(**changes)
    assert message in str(excinfo.value)
    assert str(excinfo.value).startswith("invalid trainer config: ")


def test_all_problems_are_reported_together():
    with pytest.raises(ValueError) as excinfo:
        make(kind="x", learning_rate=-1, per_device_batch_size=0)
    text = str(excinfo.value)
    assert "kind:" in text and "learning_rate:" in text and "per_device_batch_size:" in text


def test_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="unknown field 'lr'"):
        make(lr=0.1)
    with pytest.raises(ValueError, match="base_model: this field is required"):
        TrainerConfig.from_dict({"kind": "reward"})
    with pytest.raises(ValueError, match="expected an object"):
        TrainerConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_check_paths_runs_where_the_model_lives(tmp_path, tiny_bert):
    cfg = make(base_model=str(tmp_path / "missing"))  # valid on the web side...
    with pytest.raises(ValueError, match="is not a local directory"):
        cfg.check_paths()  # ...but not on a machine without that checkpoint
    with pytest.raises(ValueError, match=r"has no config\.json"):
        make(base_model=str(tmp_path)).check_paths()
    with pytest.raises(ValueError, match=r"deepspeed: .* is not a file"):
        make(base_model=str(tiny_bert), deepspeed=str(tmp_path / "ds.json")).check_paths()
    with pytest.raises(ValueError, match="output_dir: required to train"):
        make(base_model=str(tiny_bert), output_dir="").check_paths()
    make(base_model=str(tiny_bert)).check_paths()


def test_json_file_errors(tmp_path):
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="is not JSON"):
        TrainerConfig.from_json_file(bad)


def test_validating_a_config_does_not_import_torch():
    # The web process validates submitted configs, and the job supervisor builds the trainer's argv,
    # with these modules: they must stay light.
    code = (
        "import sys; from training.trainers import TrainerConfig; "
        "from training.trainers.run import launch_command, find_checkpoint; "
        "TrainerConfig.from_dict({'kind': 'cost', 'base_model': '/m'}); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
