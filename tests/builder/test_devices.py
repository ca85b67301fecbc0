"""Where a run's parts live: models and loss on the run's device, environments on CPU, one move per batch.

On a machine without CUDA the CUDA case is skipped; the CPU case checks the same wiring.
"""

import pytest
import torch

from tests.helpers import tiny
from xdrl.builder.experiment import build
from xdrl.config import compose_config, validate

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "preset",
    [
        "cartpole_ppo",
        pytest.param("cartpole_dqn", marks=pytest.mark.slow),
        pytest.param("pendulum_sac", marks=pytest.mark.slow),
    ],
)
def test_models_on_the_device_environments_on_cpu(preset, device, tmp_path):
    validated = validate(compose_config(tiny(preset, "logger=none", f"resources.device={device}")))
    experiment = build(validated, output_dir=tmp_path)
    trainer = experiment.trainer
    expected = torch.device(device).type
    assert {p.device.type for p in trainer.loss_module.parameters()} == {expected}
    assert {b.device.type for b in trainer.loss_module.buffers()} <= {expected}
    collector = trainer.collector
    assert collector.env.device.type == "cpu"  # gymnasium steps on CPU; no per-step copies of the env state
    assert collector.policy_device.type == expected and collector.storing_device.type == expected
    batches = []
    trainer.register_op("batch_process", lambda batch: batches.append(batch) or batch)
    trainer.train()
    # The collector hands over each batch on the training device: one move per batch, not per step.
    assert batches and all(batch.device.type == expected for batch in batches)
    assert trainer.replay_buffer.storage.device.type == expected
