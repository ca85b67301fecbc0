"""Trainer checkpoints: atomic, checked, the newest usable one found."""

import logging
import multiprocessing
import os
import pathlib
import random
import zipfile

import numpy as np
import pytest
import torch
from torchrl.checkpoint import Checkpoint

from tests.helpers import tiny
from xdrl.builder.checkpointing import (
    checkpoint_iteration,
    checkpoint_paths,
    load_checkpoint,
    load_latest,
    remove_interrupted_saves,
)
from xdrl.builder.experiment import build, restore
from xdrl.config import compose_config, validate
from xdrl.records.lineage import read_jsonl


def _trained(tmp_path, *extra):
    validated = validate(
        compose_config(tiny("cartpole_dqn", "logger=none", "checkpoint.interval=1", "checkpoint.keep=3", *extra))
    )
    experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.trainer.train()
    return validated, experiment


def test_keeps_the_newest_and_loads_only_with_the_restricted_unpickler(tmp_path, monkeypatch):
    _, experiment = _trained(tmp_path)
    paths = checkpoint_paths(tmp_path / "checkpoints")
    assert [p.name for p in paths] == ["trainer_00000003.pt", "trainer_00000002.pt", "trainer_00000001.pt"]

    # The payloads are torch.save files (five times faster to write than TorchRL's per-tensor
    # directory payload); reading one must never run arbitrary pickled code.
    calls = []
    real_load = torch.load

    def restricted_only(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        if kwargs.get("weights_only") is not True:
            raise AssertionError("a trainer checkpoint must load with weights_only=True")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", restricted_only)
    payload = load_checkpoint(paths[0])
    assert calls and all(calls)
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
    annealing = second.trainer.state_dict()["epsilon_annealing"]  # epsilon, and the frames it was annealed to
    assert annealing["last_frames"] == 768
    torch.testing.assert_close(annealing["epsilon"]["eps"], first.parts.policy[1].eps)
    assert second.router.iteration == 3
    torch.testing.assert_close(torch.get_rng_state(), payload["rng"]["torch_cpu"])


def test_restore_removes_partial_writes_and_files_past_the_restored_state(tmp_path, caplog):
    validated, _ = _trained(tmp_path)  # checkpoints and policy files of iterations 1-3
    payload = load_checkpoint(tmp_path / "checkpoints" / "trainer_00000001.pt")
    leftovers = [
        tmp_path / "checkpoints" / ".trainer_00000004.pt.a1b2c3.tmp",
        tmp_path / "policies" / ".policy_step_00000004.pt.d4e5f6.tmp",
        tmp_path / ".config.yaml.g7h8i9.tmp",
        # What a checkpoint save killed in TorchRL's Checkpoint.save leaves: its archive being written...
        tmp_path / "checkpoints" / f".trainer_00000004.pt.archive-{'0a' * 16}",
    ]
    for path in leftovers:
        path.write_bytes(b"half a file")
    stage = tmp_path / "checkpoints" / f".trainer_00000004.pt.stage-{'1b' * 16}"  # ... and its staging directory
    (stage / "components").mkdir(parents=True)
    (stage / "components" / "value.json").write_text("{")
    leftovers.append(stage)
    resumed = build(validated, "cpu", output_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        assert restore(resumed, payload) == 1
    assert not any(path.exists() for path in leftovers)
    assert [p.name for p in checkpoint_paths(tmp_path / "checkpoints")] == ["trainer_00000001.pt"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "trainer_00000001.json",
        "trainer_00000001.pt",
    ]
    assert sorted(p.name for p in (tmp_path / "policies").iterdir()) == ["policy_step_00000001.pt"]
    resumed.trainer.train()  # the re-run writes the files of iterations 2 and 3 again
    assert [p.name for p in checkpoint_paths(tmp_path / "checkpoints")] == [
        "trainer_00000003.pt",
        "trainer_00000002.pt",
        "trainer_00000001.pt",
    ]


def test_pruning_never_deletes_the_checkpoint_just_written(tmp_path):
    _trained(tmp_path, "checkpoint.keep=1")
    payload = load_checkpoint(tmp_path / "checkpoints" / "trainer_00000003.pt")
    longer = validate(
        compose_config(
            tiny("cartpole_dqn", "logger=none", "checkpoint.interval=1", "checkpoint.keep=1")
            + ["collector.total_frames=1024", "collector.frames_per_batch=256", "collector.init_random_frames=256"]
        )
    )
    resumed = build(longer, "cpu", output_dir=tmp_path)
    restore(resumed, payload)
    # A stale, higher-numbered checkpoint the restore did not see (for example written by
    # another attempt on shared storage after this one restored).
    stale = tmp_path / "checkpoints" / "trainer_00000009.pt"
    stale.write_bytes((tmp_path / "checkpoints" / "trainer_00000003.pt").read_bytes())
    saved = []
    resumed.checkpoints.on_save.append(saved.append)
    resumed.trainer.train()  # one more iteration
    assert [p.name for p in saved] == ["trainer_00000004.pt"]
    assert saved[0].exists()
    assert not (tmp_path / "checkpoints" / "trainer_00000003.pt").exists()  # keep=1 among the older ones


def test_a_checkpoint_restores_the_rng_streams_exactly(tmp_path):
    validated = validate(compose_config(tiny("cartpole_dqn", "logger=none", "checkpoint.interval=1")))
    first = build(validated, "cpu", output_dir=tmp_path / "a")
    streams = {}

    def streams_after_save(path):
        streams[path.name] = (random.getstate(), np.random.get_state(), torch.get_rng_state())

    first.checkpoints.on_save.append(streams_after_save)
    first.trainer.train()
    payload, path = load_latest(tmp_path / "a" / "checkpoints")
    resumed = build(validated, "cpu", output_dir=tmp_path / "b")
    # Anywhere but where the checkpoint was.
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    restore(resumed, payload)
    draws = (random.random(), np.random.random(4).tolist(), torch.rand(4))
    python, numpy, torch_cpu = streams[path.name]
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(torch_cpu)
    expected = (random.random(), np.random.random(4).tolist(), torch.rand(4))
    assert draws[:2] == expected[:2] and torch.equal(draws[2], expected[2])


def test_the_hook_state_restores_the_saved_iteration_and_no_stop_request(tmp_path):
    from xdrl.builder.checkpointing import PREEMPTED

    validated = validate(compose_config(tiny("cartpole_dqn", "logger=none", "checkpoint.interval=50")))
    first = build(validated, "cpu", output_dir=tmp_path)
    first.checkpoints.request_stop(PREEMPTED)  # acted on at the end of iteration 1
    first.trainer.train()
    assert first.checkpoints.stopped_by == PREEMPTED and first.trainer.collected_frames == 256
    payload, _ = load_latest(tmp_path / "checkpoints")
    assert payload["trainer"]["trainer_checkpoint"] == {"last_saved_iteration": 1}
    resumed = build(validated, "cpu", output_dir=tmp_path)
    assert restore(resumed, payload) == 1
    hook = resumed.checkpoints
    assert hook.last_saved_iteration == 1
    assert (hook.stop_requested, hook.stop_reason, hook.stopped_by) == (False, None, None)
    resumed.trainer.train()  # the resumed run trains to its budget
    assert resumed.trainer.collected_frames == 768 and hook.stopped_by is None
    assert checkpoint_paths(tmp_path / "checkpoints")[0].name == "trainer_00000003.pt"


def _save_killed(directory, kill_at):
    """Child process: save a checkpoint over ``trainer_00000002.pt`` and die at ``kill_at`` (no cleanup runs)."""
    calls = {"replace": 0}
    replace = os.replace

    def write_then_die(*_args, **_kwargs):
        os._exit(9)

    def second_replace_dies(source, destination):
        calls["replace"] += 1
        if calls["replace"] == 2:  # the old checkpoint moved aside, the new one not renamed in yet
            os._exit(9)
        replace(source, destination)

    if kill_at == "archive":
        zipfile.ZipFile.write = write_then_die
    else:
        os.replace = second_replace_dies
    Checkpoint(format="archive", value={"saved": "second"}).save(directory / "trainer_00000002.pt")
    os._exit(0)


@pytest.mark.parametrize("kill_at", ["archive", "publish"])
def test_a_killed_save_leaves_only_names_restore_recognises(tmp_path, kill_at):
    # TorchRL's staging names are undocumented (torchrl 0.14.1): this pins them.
    Checkpoint(format="archive", value={"saved": "first"}).save(tmp_path / "trainer_00000002.pt")
    child = multiprocessing.get_context("fork").Process(target=_save_killed, args=(tmp_path, kill_at))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left and all(name.startswith(".trainer_00000002.pt.") for name in left)
    removed = remove_interrupted_saves(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer_00000002.pt"]
    assert len(removed) == len(left) - (kill_at == "publish")  # the moved-aside checkpoint went back
    value = {}
    Checkpoint(format="archive", value=value).load(tmp_path / "trainer_00000002.pt")
    assert value == {"saved": "first"}


class _Reports:
    """What the Tune bridge would hand to ``ray.tune.report``: (iteration, metrics, checkpoint bytes)."""

    def __init__(self, monkeypatch, router):
        import ray.tune

        self.calls = []

        def report(metrics, checkpoint=None):
            data = None
            if checkpoint is not None:
                with checkpoint.as_directory() as directory:
                    data = (pathlib.Path(directory) / "trainer.pt").read_bytes()
            self.calls.append((router.iteration, metrics, data))

        monkeypatch.setattr(ray.tune, "report", report)


def _bridged(tmp_path, monkeypatch, *extra):
    from xdrl.distributed.bridge import TuneReportHook

    validated = validate(compose_config(tiny("cartpole_dqn", "logger=none", *extra)))
    experiment = build(validated, "cpu", output_dir=tmp_path)
    TuneReportHook(experiment.router, experiment.checkpoints).register(experiment.trainer)
    return experiment, _Reports(monkeypatch, experiment.router)


def test_a_stop_request_landing_inside_the_checkpoint_hook_still_hands_its_checkpoint_to_tune(tmp_path, monkeypatch):
    from xdrl.builder.checkpointing import PREEMPTED

    experiment, reports = _bridged(tmp_path, monkeypatch, "checkpoint.interval=50")
    hook = experiment.checkpoints
    iteration = hook.iteration

    def iteration_then_signal():
        # The racy moment: SIGTERM arrives while the hook is deciding about iteration 1.
        if experiment.router.iteration == 1 and not hook.stop_requested:
            hook.request_stop(PREEMPTED)
        return iteration()

    hook.iteration = iteration_then_signal
    experiment.trainer.train()
    assert hook.stopped_by == PREEMPTED
    on_disk = checkpoint_paths(tmp_path / "checkpoints")
    assert [p.name for p in on_disk] == ["trainer_00000002.pt"]  # acted on at the next iteration
    handed = [(i, data) for i, _, data in reports.calls if data is not None]
    assert handed == [(2, on_disk[0].read_bytes())]  # the checkpoint on disk is the one Tune got
    assert [i for i, _, _ in reports.calls] == [1, 2]


def test_a_stop_request_in_the_last_iteration_or_after_it_leaves_a_finished_run(tmp_path, monkeypatch):
    from xdrl.builder.checkpointing import PREEMPTED

    experiment, reports = _bridged(tmp_path, monkeypatch, "checkpoint.interval=50")
    hook = experiment.checkpoints
    stops = []
    hook.on_stop.append(stops.append)
    iteration = hook.iteration

    def iteration_then_signal():
        if experiment.router.iteration == 3:  # the last of 768 / 256 iterations
            hook.request_stop(PREEMPTED)
        return iteration()

    hook.iteration = iteration_then_signal
    experiment.trainer.train()
    hook.request_stop(PREEMPTED)  # and once more after the last iteration, during the shutdown
    assert hook.stopped_by is None and stops == []  # not preempted, W&B not marked
    assert experiment.trainer.collected_frames == 768
    assert [i for i, _, data in reports.calls if data is not None] == [3]


def test_a_resume_puts_the_configured_learning_rate_into_the_restored_optimizer(tmp_path):
    # PPO with its learning rate annealed over the run: 2 iterations of 256 frames, then resumed with
    # another rate and twice the budget.
    base = ["experiment=cartpole_ppo", "logger=none", "hooks.eval.interval_frames=0", "algo.epochs=1"]
    first = build(validate(compose_config([*base, "collector.total_frames=512"])), "cpu", output_dir=tmp_path)
    first.trainer.train()
    assert first.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 0.999 * 2 / 2))
    payload, _ = load_latest(tmp_path / "checkpoints")
    longer = validate(compose_config([*base, "collector.total_frames=1024", "algo.lr=5e-4"]))
    resumed = build(longer, "cpu", output_dir=tmp_path)
    restore(resumed, payload)
    # Where a run planned with lr 5e-4 over 4 iterations is after 2 of them, not the old 1e-6.
    assert [g["lr"] for g in resumed.trainer.optimizer.param_groups] == pytest.approx([5e-4 * (1 - 0.999 * 2 / 4)])
    resumed.trainer.train()
    assert resumed.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * 1e-3)


def test_a_resume_without_a_schedule_sets_the_new_learning_rate(tmp_path):
    _trained(tmp_path, "algo.anneal_lr=false")
    payload, _ = load_latest(tmp_path / "checkpoints")
    changed = validate(compose_config(tiny("cartpole_dqn", "logger=none", "algo.anneal_lr=false", "algo.lr=7e-4")))
    resumed = build(changed, "cpu", output_dir=tmp_path)
    restore(resumed, payload)
    assert [g["lr"] for g in resumed.trainer.optimizer.param_groups] == [7e-4]


def test_an_archive_with_the_earlier_tensordict_payloads_still_loads(tmp_path):
    from torchrl.checkpoint import StateDictCheckpointAdapter

    from xdrl.builder.checkpointing import COMPONENTS, FORMAT_VERSION

    class Holder:
        def __init__(self, state):
            self.state = state

        def state_dict(self):
            return self.state

        def load_state_dict(self, state):
            self.state = state

    earlier = Checkpoint(format="archive")
    for name in COMPONENTS:
        earlier.register(name, Holder({"w": torch.arange(3.0), "n": 1}), adapter=StateDictCheckpointAdapter())
    path = tmp_path / "trainer_00000001.pt"
    earlier.save(path, metadata={"format": FORMAT_VERSION, "iteration": 1, "collected_frames": 5})
    payload = load_checkpoint(path)
    assert payload["iteration"] == 1 and payload["collected_frames"] == 5
    assert torch.equal(payload["extra"]["w"], torch.arange(3.0)) and payload["rng"]["n"] == 1


def test_metrics_file_is_fsynced_before_each_checkpoint_and_not_per_iteration(tmp_path, monkeypatch):
    """A checkpoint covers only iterations durable in metrics.jsonl; iterations between checkpoints are not fsynced."""
    events = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        path = pathlib.Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.name == "metrics.jsonl":
            events.append(("fsync", len(path.read_text().splitlines())))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    overrides = [
        "experiment=cartpole_ppo",
        "collector.total_frames=1280",
        "algo.epochs=1",
        "hooks.eval.interval_frames=0",
    ]
    validated = validate(compose_config([*overrides, "logger=none", "checkpoint.interval=2"]))
    experiment = build(validated, "cpu", output_dir=tmp_path)
    experiment.checkpoints.on_save.append(lambda path: events.append(("checkpoint", path)))
    experiment.trainer.train()
    iterations = experiment.router.iteration
    assert iterations == 5
    saved = [path for kind, path in events if kind == "checkpoint"]
    assert [path.name for path in saved] == ["trainer_00000002.pt", "trainer_00000004.pt", "trainer_00000005.pt"]
    # Exactly one fsync of the file before each checkpoint, holding that checkpoint's iterations.
    expected = []
    for path in saved:
        expected += [("fsync", checkpoint_iteration(path)), ("checkpoint", path)]
    assert events == expected
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == iterations
