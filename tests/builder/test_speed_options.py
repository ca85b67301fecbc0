"""The speed and SB3-parity options of the algorithm builders, on real trainers (seconds each)."""

import pytest
import torch

from tests.helpers import tiny
from xdrl.builder.algorithms.common import TRANSITION_KEYS
from xdrl.builder.algorithms.ppo import DirectClipPPOLoss, DirectGAE
from xdrl.builder.checkpointing import load_checkpoint
from xdrl.builder.experiment import build, restore
from xdrl.builder.metrics import read_metrics_file
from xdrl.config import compose_config, validate


def _built(tmp_path, preset, *extra):
    return build(validate(compose_config(tiny(preset, "logger=none", *extra))), "cpu", output_dir=tmp_path)


def test_clip_range_decays_with_the_frames_and_a_restore_finds_it_again(tmp_path):
    clips = []
    experiment = _built(
        tmp_path / "a", "cartpole_ppo", "algo.anneal_clip=true", "collector.total_frames=1024", "checkpoint.interval=2"
    )
    loss = experiment.trainer.loss_module
    experiment.trainer.register_op("post_optim", lambda: clips.append(float(loss.clip_epsilon)))
    experiment.trainer.train()
    steps = len(clips) // 4  # 4 iterations of 256 frames, the same number of updates each
    assert [clips[i * steps] for i in range(4)] == pytest.approx([0.2 * 0.75, 0.2 * 0.5, 0.2 * 0.25, 0.0])
    # A run restored from iteration 2 takes up the schedule where the frames are.
    again = _built(tmp_path / "b", "cartpole_ppo", "algo.anneal_clip=true", "collector.total_frames=1024")
    restore(again, load_checkpoint(tmp_path / "a" / "checkpoints" / "trainer_00000002.pt"))
    restored = []
    again.trainer.register_op("post_optim", lambda: restored.append(float(again.trainer.loss_module.clip_epsilon)))
    again.trainer.train()
    assert restored[0] == pytest.approx(0.2 * 0.25)


def test_checkpoints_of_the_functional_ppo_loss_still_load(tmp_path):
    experiment = _built(tmp_path, "cartpole_ppo")
    loss = experiment.trainer.loss_module
    state = {key: value.clone() for key, value in loss.state_dict().items()}
    # The names TorchRL's functional ClipPPOLoss gave the same parameters (xdrl before 0.2).
    old = {
        key.replace("actor_network.", "actor_network_params.").replace("critic_network.", "critic_network_params."): (
            value + 1.0 if value.is_floating_point() and value.dim() else value
        )
        for key, value in state.items()
    }
    assert any(k.startswith("actor_network_params.") for k in old)
    loss.load_state_dict(old)
    for key, value in loss.state_dict().items():
        if value.is_floating_point() and value.dim():
            torch.testing.assert_close(value, state[key] + 1.0)


def test_advantages_once_per_batch_or_again_every_epoch(tmp_path):
    calls = {}
    for recompute in (False, True):
        experiment = _built(tmp_path / str(recompute), "cartpole_ppo", f"algo.recompute_advantages={recompute}")
        trainer = experiment.trainer
        network = trainer.loss_module.critic_network.module  # the critic's MLP, whichever way it is called
        original = network.forward
        count = [0]

        def counted(*args, _original=original, _count=count, **kwargs):
            if not torch.is_grad_enabled():  # GAE runs the critic without gradients; the loss with
                _count[0] += 1
            return _original(*args, **kwargs)

        network.forward = counted
        trainer.train()
        rows = read_metrics_file(tmp_path / str(recompute) / "metrics.jsonl")
        assert rows[-1]["train/agents/loss_critic"] > 0
        calls[recompute] = count[0]
    epochs = validate(compose_config(tiny("cartpole_ppo"))).algo.epochs
    assert calls[False] == 2  # one GAE per collected batch (512 frames of 256)
    assert calls[True] == calls[False] * epochs  # GAE before every epoch instead of once per batch


def test_off_policy_buffers_store_only_what_the_loss_reads(tmp_path):
    experiment = _built(tmp_path, "cartpole_dqn")
    experiment.trainer.train()
    stored = experiment.trainer.replay_buffer[:4]
    assert sorted(stored.keys(True, True), key=str) == sorted(TRANSITION_KEYS, key=str)


def test_box_action_ppo_trains_on_batched_envs(tmp_path):
    # The bounds of a tanh-normal actor come from one env's action spec, not the batch's.
    experiment = _built(
        tmp_path,
        "cartpole_ppo",
        "env=pendulum",
        "env.num_envs=4",
        "collector.total_frames=512",
        "algo.minibatch_size=64",
    )
    experiment.trainer.train()
    rows = read_metrics_file(tmp_path / "metrics.jsonl")
    assert len(rows) == 2 and rows[-1]["train/agents/loss_critic"] > 0


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("minibatch", [64, 256])
def test_ppo_trains_every_epoch_on_every_frame_of_the_batch_once(tmp_path, recompute, minibatch):
    # TorchRL's ReplayBufferTrainer(iterate=True) ended every other epoch before its first
    # update (the pass's StopIteration): the preset's 20 epochs were 10.
    experiment = _built(
        tmp_path,
        "cartpole_ppo",
        f"algo.recompute_advantages={recompute}",
        f"algo.minibatch_size={minibatch}",
        "algo.epochs=3",
        "collector.frames_per_batch=256",
        "collector.total_frames=512",
    )
    trainer = experiment.trainer
    seen: list[torch.Tensor] = []
    batches: list[torch.Tensor] = []
    original = trainer.loss_module.forward

    def recorded(sub_batch, _original=original):
        seen.append(sub_batch["observation"].clone())
        return _original(sub_batch)

    trainer.loss_module.forward = recorded
    trainer.register_op("batch_process", lambda batch: batches.append(batch["observation"].reshape(-1, 4).clone()))
    trainer.train()
    per_epoch = 256 // minibatch
    assert len(seen) == 2 * 3 * per_epoch  # iterations x epochs x minibatches
    for iteration, batch in enumerate(batches):
        expected = sorted(map(tuple, batch.tolist()))
        for epoch in range(3):
            start = (iteration * 3 + epoch) * per_epoch
            drawn = torch.cat(seen[start : start + per_epoch])
            assert sorted(map(tuple, drawn.tolist())) == expected


@pytest.mark.parametrize("double", [False, True])
def test_direct_dqn_loss_equals_torchrl_dqn_loss(tmp_path, double):
    from torchrl.objectives import DQNLoss

    experiment = _built(tmp_path, "cartpole_dqn", f"algo.double_dqn={double}", "algo.gamma=0.9")
    trainer = experiment.trainer
    trainer.train()  # a filled buffer, a target network that differs from the online one
    loss = trainer.loss_module
    params = list(loss.value_network_params.values(True, True))
    targets = list(loss.target_value_network_params.values(True, True))
    assert any(not torch.equal(p, t) for p, t in zip(params, targets, strict=True))
    batch = trainer.replay_buffer.sample(64)
    assert batch["next", "terminated"].any() and not batch["next", "terminated"].all()

    def loss_and_grads(forward):
        for p in params:
            p.grad = None
        value = forward(batch.clone())["loss"]
        value.backward()
        return value.detach(), [p.grad.clone() for p in params]

    direct, direct_grads = loss_and_grads(loss)
    torchrl, torchrl_grads = loss_and_grads(lambda td: DQNLoss.forward(loss, td))
    torch.testing.assert_close(direct, torchrl)
    for a, b in zip(direct_grads, torchrl_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_direct_ppo_loss_and_gae_equal_torchrl_clip_ppo_loss_and_gae(tmp_path, env):
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    experiment = _built(
        tmp_path,
        "cartpole_ppo",
        f"env={env}",
        "env.num_envs=4",
        "env.max_episode_steps=50",  # pendulum's episodes end by truncation only: some inside the batch
        "algo.entropy_coef=0.01",
        "algo.critic_loss=l2",
        "collector.frames_per_batch=256",
        "collector.total_frames=512",
    )
    trainer = experiment.trainer
    batches = []
    trainer.register_op("batch_process", lambda batch: batches.append(batch.clone()))
    trainer.train()  # trained weights, real batches from the collector
    batch = batches[-1]
    assert batch.ndim == 2 and batch["next", "done"].any()
    loss = trainer.loss_module
    assert isinstance(loss, DirectClipPPOLoss)
    direct_gae, reference = (
        cls(gamma=0.98, lmbda=0.8, value_network=loss.critic_network, average_gae=True) for cls in (DirectGAE, GAE)
    )
    ours, theirs = direct_gae(batch.clone()), reference(batch.clone())
    for key in ("advantage", "value_target", "state_value", ("next", "state_value")):
        torch.testing.assert_close(ours[key], theirs[key])
    sample = ours.reshape(-1)[:128]
    params = [p for p in loss.parameters() if p.requires_grad]

    def outputs_and_grads(forward):
        for p in params:
            p.grad = None
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the entropy of a tanh-normal actor is sampled
            out = forward(sample.clone())
        total = sum(value for key, value in out.items() if key.startswith("loss_"))
        total.backward()
        return out.detach(), [p.grad.clone() for p in params]

    direct, direct_grads = outputs_and_grads(loss)
    torchrl, torchrl_grads = outputs_and_grads(lambda td: ClipPPOLoss.forward(loss, td))
    assert set(direct.keys()) == set(torchrl.keys())
    for key in torchrl.keys():
        torch.testing.assert_close(direct[key], torchrl[key].reshape(direct[key].shape))
    for a, b in zip(direct_grads, torchrl_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_direct_sac_loss_equals_torchrl_sac_loss(tmp_path):
    from torchrl.objectives import SACLoss

    from xdrl.builder.algorithms.sac import DirectSACLoss

    experiment = _built(
        tmp_path,
        "pendulum_sac",
        "env.max_episode_steps=50",
        "collector.total_frames=400",
        "collector.frames_per_batch=100",
        "collector.init_random_frames=100",
        "algo.optim_steps_per_batch=20",
        "algo.gamma=0.9",
    )
    trainer = experiment.trainer
    trainer.train()  # trained networks and temperature, target networks behind the online ones
    loss = trainer.loss_module
    assert isinstance(loss, DirectSACLoss)
    assert not torch.equal(
        loss.qvalue_network_params["module", "0", "weight"], loss.target_qvalue_network_params["module", "0", "weight"]
    )
    batch = trainer.replay_buffer.sample(64)
    params = [p for p in trainer.optimizer.param_groups[0]["params"]]

    def outputs_and_grads(forward):
        for p in params:
            p.grad = None
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the actor's actions are sampled
            out = forward(batch.clone())
        sum(value for key, value in out.items() if key.startswith("loss_")).backward()
        return out.detach(), [None if p.grad is None else p.grad.clone() for p in params]

    direct, direct_grads = outputs_and_grads(loss)
    torchrl, torchrl_grads = outputs_and_grads(lambda td: SACLoss.forward(loss, td))
    assert set(direct.keys()) == set(torchrl.keys())
    for key in torchrl.keys():
        torch.testing.assert_close(direct[key], torchrl[key])
    assert all(g is not None for g in direct_grads)
    for a, b in zip(direct_grads, torchrl_grads, strict=True):
        torch.testing.assert_close(a, b)
