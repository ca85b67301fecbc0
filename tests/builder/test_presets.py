"""Every preset builds, with nothing TorchRL deprecates, and trains a few iterations with the full hook set (seconds each)."""

import warnings

import pytest

from tests.helpers import TINY, tiny
from xdrl.builder.experiment import build
from xdrl.builder.metrics import read_metrics_file
from xdrl.config import compose_config, validate


@pytest.mark.parametrize("preset", sorted(TINY))
def test_preset_trains_with_the_full_hook_set(preset, tmp_path):
    validated = validate(compose_config(tiny(preset, "logger=none")))
    experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.trainer.train()
    config = validated.config
    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    iterations = -(-config.collector.total_frames // config.collector.frames_per_batch)
    assert [row["counters/iter"] for row in rows] == list(range(1, iterations + 1))
    assert rows[-1]["counters/total_frames"] == experiment.trainer.collected_frames >= config.collector.total_frames
    trained = [row for row in rows if any(key.startswith("train/agents/loss") for key in row)]
    assert trained, "no optimisation step happened"
    assert any("eval/deterministic/reward/episode_reward_mean" in row for row in rows)
    assert sorted(p.name for p in (tmp_path / "policies").iterdir())[-1] == f"policy_step_{iterations:08d}.pt"
    assert (tmp_path / "checkpoints" / f"trainer_{iterations:08d}.pt").exists()
    if validated.env_info.multi_objective:
        row = next(r for r in rows if "collection/reward/episode_reward_mean" in r)
        weights = config.env.reward_weights
        objectives = [row[f"collection/reward/objective_{i}/episode_reward_mean"] for i in range(2)]
        assert row["collection/reward/episode_reward_mean"] == pytest.approx(
            sum(w * o for w, o in zip(weights, objectives, strict=True)), rel=1e-5
        )


#: What TorchRL 0.14.1 says of a hook stage or class it will replace, and of its prototype algorithm trainers.
TORCHRL_RETIRING = (
    "hook stage will be replaced by OptimizationStepper",
    "will be replaced by DefaultOptimizationStepper",
    "experimental/prototype",
)


@pytest.mark.parametrize("preset", sorted(TINY))
def test_building_a_preset_uses_nothing_torchrl_deprecates(preset, tmp_path):
    validated = validate(compose_config(tiny(preset, "logger=none")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # over pytest's filters, which ignore FutureWarning
        experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.trainer.collector.shutdown()
    flagged = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if issubclass(w.category, FutureWarning) or any(text in str(w.message) for text in TORCHRL_RETIRING)
    ]
    assert flagged == []
