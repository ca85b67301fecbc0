import pathlib

import pytest
import torch

from xdrl.demo import make_ppo_trainer
from xdrl.trainer_hooks import PolicyCheckpointHook
from xdrl.trainer_hooks.checkpoints import atomic_torch_save


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
    trainer = make_ppo_trainer(total_frames=256, frames_per_batch=128)
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
    trainer = make_ppo_trainer(total_frames=128, frames_per_batch=128)
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
    trainer = make_ppo_trainer(total_frames=384, frames_per_batch=128)
    hook = PolicyCheckpointHook(directory=tmp_path, interval=1, policy_path="loss_module.actor_network")
    hook.register(trainer)
    trainer.train()
    frames = [torch.load(p, weights_only=True)["collected_frames"] for p in sorted(pathlib.Path(tmp_path).iterdir())]
    assert frames == [128, 256, 384]
