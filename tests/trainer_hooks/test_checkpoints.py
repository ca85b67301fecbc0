import pathlib

import numpy as np
import pytest
import torch

from tests.helpers import TINY
from tests.trainer_hooks.helpers import algorithm, cartpole_ppo
from xdrl.builder.experiment import build
from xdrl.config import compose_config, validate
from xdrl.records.atomic import atomic_torch_save
from xdrl.trainer_hooks import PolicyCheckpointHook


def test_writes_every_interval_with_payload(tmp_path):
    policy = torch.nn.Linear(3, 2)
    hook = PolicyCheckpointHook(directory=tmp_path / "new", interval=3, policy=policy, prefix="actor", meta={"seed": 7})
    for _ in range(7):
        hook()
    files = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert files == ["actor_step_00000003.pt", "actor_step_00000006.pt"]
    payload = torch.load(tmp_path / "new" / "actor_step_00000006.pt", weights_only=True)
    assert payload["num_calls"] == 6
    assert payload["meta"] == {"seed": 7}
    assert payload["collected_frames"] == 0
    torch.testing.assert_close(payload["policy_state_dict"]["weight"], policy.weight.detach())
    assert hook.num_calls == 7
    assert hook.last_checkpoint_path == tmp_path / "new" / "actor_step_00000006.pt"


@pytest.mark.parametrize("interval", [0, -5])
def test_non_positive_interval_registers_but_writes_nothing(tmp_path, interval):
    trainer = algorithm(cartpole_ppo(256, 128)).trainer
    hook = PolicyCheckpointHook(directory=tmp_path, interval=interval, policy_path="loss_module.actor_network")
    hook.register(trainer)
    trainer.train()
    assert hook.num_calls == 2
    assert list(tmp_path.iterdir()) == []
    assert hook.last_checkpoint_path is None


def test_needs_policy_or_path(tmp_path):
    with pytest.raises(ValueError, match="policy= .* or policy_path="):
        PolicyCheckpointHook(directory=tmp_path, interval=1)


def test_bad_policy_path_names_the_missing_attribute(tmp_path):
    trainer = algorithm(cartpole_ppo(128, 128)).trainer
    hook = PolicyCheckpointHook(directory=tmp_path, interval=1, policy_path="loss_module.actor")
    with pytest.raises(AttributeError, match=r"policy_path='loss_module.actor'.*ClipPPOLoss.*'actor'"):
        hook.register(trainer)
    hook = PolicyCheckpointHook(directory=tmp_path, interval=1, policy_path="total_frames")
    with pytest.raises(TypeError, match="resolves to a int"):
        hook.register(trainer)


def test_numbering_continues_after_state_round_trip(tmp_path):
    policy = torch.nn.Linear(2, 2)
    first = PolicyCheckpointHook(directory=tmp_path, interval=2, policy=policy)
    for _ in range(4):
        first()
    second = PolicyCheckpointHook(directory=tmp_path, interval=2, policy=policy)
    second.load_state_dict(first.state_dict())
    assert second.last_checkpoint_path == tmp_path / "policy_step_00000004.pt"
    second()
    second()
    assert second.last_checkpoint_path == tmp_path / "policy_step_00000006.pt"


def test_atomic_save_leaves_previous_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    atomic_torch_save({"v": 1}, path)

    def exploding_save(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"v": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left behind


def test_collected_frames_recorded_from_trainer(tmp_path):
    trainer = algorithm(cartpole_ppo(384, 128)).trainer
    hook = PolicyCheckpointHook(directory=tmp_path, interval=1, policy_path="loss_module.actor_network")
    hook.register(trainer)
    trainer.train()
    frames = [torch.load(p, weights_only=True)["collected_frames"] for p in sorted(pathlib.Path(tmp_path).iterdir())]
    assert frames == [128, 256, 384]


# --- the upstream payload: step next to policy_state_dict and meta, loadable with default arguments ----------------


def test_payload_carries_step_and_loads_with_default_and_weights_only_arguments(tmp_path):
    policy = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    hook = PolicyCheckpointHook(directory=tmp_path, interval=2, policy=policy, meta={"run": "a", "weights": [1.0, 0.5]})
    for _ in range(4):
        hook()
    path = tmp_path / "policy_step_00000004.pt"
    default = torch.load(path)  # default arguments: weights_only=True since torch 2.6
    safe = torch.load(path, weights_only=True)
    for payload in (default, safe):
        assert payload["step"] == payload["num_calls"] == hook.num_calls == 4
        assert payload["meta"] == {"run": "a", "weights": [1.0, 0.5]}
        assert set(payload) == {"policy_state_dict", "step", "num_calls", "collected_frames", "meta"}
        restored = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        restored.load_state_dict(payload["policy_state_dict"])  # what an upstream reader does with the file
        torch.testing.assert_close(restored[2].bias, policy[2].bias)
    assert torch.load(tmp_path / "policy_step_00000002.pt")["step"] == 2


def test_meta_is_stored_as_plain_values(tmp_path):
    meta = {"seed": np.int64(3), "lr": np.float32(0.5), "dir": pathlib.Path("/runs/a"), "nested": {"ids": (1, 2)}}
    hook = PolicyCheckpointHook(directory=tmp_path, interval=1, policy=torch.nn.Linear(1, 1), meta=meta)
    hook()
    payload = torch.load(hook.last_checkpoint_path)
    assert payload["meta"] == {"seed": 3, "lr": 0.5, "dir": "/runs/a", "nested": {"ids": (1, 2)}}
    assert type(payload["meta"]["seed"]) is int


def test_meta_that_weights_only_loading_rejects_is_refused_when_built(tmp_path):
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"meta\['extra'\]\[1\]=.*Opaque.*weights_only=True"):
        PolicyCheckpointHook(
            directory=tmp_path, interval=1, policy=torch.nn.Linear(1, 1), meta={"extra": [1, Opaque()]}
        )
    with pytest.raises(TypeError, match=r"meta\['nested'\] has the key 3 \(int\)"):
        PolicyCheckpointHook(directory=tmp_path, interval=1, policy=torch.nn.Linear(1, 1), meta={"nested": {3: "x"}})


def test_real_trainer_policy_files_load_with_default_arguments(tmp_path):
    validated = validate(
        compose_config(
            [
                "experiment=cartpole_ppo",
                *TINY["cartpole_ppo"],
                "hooks.eval.interval_frames=0",
                "hooks.policy_checkpoint.interval=1",
                "logger=none",
            ]
        )
    )
    experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.trainer.train()

    hook = experiment.trainer._modules["policy_checkpoint_hook"]
    files = sorted((tmp_path / "policies").iterdir())
    assert [f.name for f in files] == ["policy_step_00000001.pt", "policy_step_00000002.pt"]
    config = validated.config
    for number, path in enumerate(files, start=1):
        default, safe = torch.load(path), torch.load(path, weights_only=True)
        for payload in (default, safe):
            assert payload["step"] == payload["num_calls"] == number
            assert payload["collected_frames"] == number * config.collector.frames_per_batch
            assert payload["meta"] == {
                "experiment": "cartpole_ppo",
                "algo": "ppo",
                "env": "CartPole-v1",
                "seed": config.seed,
                "policy_path": "loss_module.actor_network",
            }
    assert hook.num_calls == 2
    last = torch.load(files[-1])
    policy = experiment.trainer.loss_module.actor_network
    assert set(last["policy_state_dict"]) == set(policy.state_dict())
    for name, value in policy.state_dict().items():
        torch.testing.assert_close(last["policy_state_dict"][name], value)
