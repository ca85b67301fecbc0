"""Trainer checkpoints: atomic, checked, the newest usable one found."""

import logging

import torch

from tests.helpers import tiny
from xdrl.builder.checkpointing import checkpoint_paths, load_latest
from xdrl.builder.experiment import build, restore
from xdrl.config import compose_config, validate


def _trained(tmp_path, *extra):
    validated = validate(
        compose_config(tiny("cartpole_dqn", "logger=none", "checkpoint.interval=1", "checkpoint.keep=3", *extra))
    )
    experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.trainer.train()
    return validated, experiment


def test_keeps_the_newest_and_loads_with_weights_only(tmp_path):
    _, experiment = _trained(tmp_path)
    paths = checkpoint_paths(tmp_path / "checkpoints")
    assert [p.name for p in paths] == ["trainer_00000003.pt", "trainer_00000002.pt", "trainer_00000001.pt"]
    payload = torch.load(paths[0], weights_only=True)
    assert payload["iteration"] == 3 and payload["collected_frames"] == 768
    assert len(payload["extra"]["replay_buffer"]) > 0


def test_truncated_or_corrupted_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    _trained(tmp_path)
    newest, previous = checkpoint_paths(tmp_path / "checkpoints")[:2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a crash mid-copy, or a full disk
    with caplog.at_level(logging.WARNING):
        payload, path = load_latest(tmp_path / "checkpoints")
    assert path == previous and payload["iteration"] == 2
    assert "skipping checkpoint" in caplog.text and newest.name in caplog.text

    middle = bytearray(previous.read_bytes())
    middle[len(middle) // 2] ^= 0xFF  # silent corruption the zip reader might not notice
    previous.write_bytes(bytes(middle))
    payload, path = load_latest(tmp_path / "checkpoints")
    assert payload["iteration"] == 1
    assert "SHA-256 differs" in caplog.text


def test_restore_brings_back_models_buffer_counters_and_rng(tmp_path):
    validated, first = _trained(tmp_path / "a")
    payload, _ = load_latest(tmp_path / "a" / "checkpoints")
    second = build(validated, "cpu", output_dir=tmp_path / "a")
    assert restore(second, payload) == 3
    for name, value in first.trainer.loss_module.state_dict().items():
        torch.testing.assert_close(second.trainer.loss_module.state_dict()[name], value)
    assert second.trainer.collected_frames == 768
    assert second.hooks.counters_hook.state_dict() == first.hooks.counters_hook.state_dict()
    assert len(second.trainer.replay_buffer) == len(first.trainer.replay_buffer)
    assert second.trainer._greedy_last_frames == first.trainer._greedy_last_frames
    assert second.router.iteration == 3
    torch.testing.assert_close(torch.get_rng_state(), payload["rng"]["torch"])
