"""Bad input through the real CLI: exit 2, one line naming the key, nothing written, no Ray started."""

import pytest
import torch
import yaml

from tests.helpers import REPO, run_xdrl

CUDA_DEVICES = torch.cuda.device_count() if torch.cuda.is_available() else 0

#: name -> (command, overrides, the key the error line names). ``{tmp}`` is the test's directory,
#: ``{file}`` a file in it. Train cases get ``output_dir={tmp}/run`` and tune cases
#: ``experiment=cartpole_ppo search=optuna search.storage_path={tmp}/store`` unless they set their own.
CASES = {
    # Non-finite numbers.
    "train inf learning rate": ("train", ["algo.lr=inf"], "algo.lr"),
    "train nan learning rate": ("train", ["algo.lr=nan"], "algo.lr"),
    "train inf gradient norm": ("train", ["algo.max_grad_norm=inf"], "algo.max_grad_norm"),
    "train inf gpus per trial": ("train", ["resources.gpus_per_trial=inf"], "resources.gpus_per_trial"),
    "train inf reward weight": (
        "train",
        ["experiment=deep_sea_treasure_ppo", "env.reward_weights=[inf,1]"],
        "env.reward_weights[0]",
    ),
    "tune inf search bound": ("tune", ["search.spaces.ppo.algo.lr.high=inf"], "search.space.algo.lr"),
    # Absurd sizes.
    "train layer too wide": ("train", ["algo.hidden_sizes=[1000000000]"], "algo.hidden_sizes"),
    "train float total frames": ("train", ["collector.total_frames=1e20"], "collector.total_frames"),
    "train total frames too many": (
        "train",
        ["collector.total_frames=100000000000000000000"],
        "collector.total_frames",
    ),
    "train frames per batch too many": (
        "train",
        ["collector.frames_per_batch=100000000"],
        "collector.frames_per_batch",
    ),
    "train too many envs": ("train", ["env.num_envs=100000"], "env.num_envs"),
    "train buffer too large": ("train", ["experiment=cartpole_dqn", "algo.buffer_size=100000000"], "algo.buffer_size"),
    "train batch too large": ("train", ["experiment=cartpole_dqn", "algo.batch_size=100000000"], "algo.batch_size"),
    "train minibatch too large": ("train", ["algo.minibatch_size=100000000"], "algo.minibatch_size"),
    "train random frames beyond the budget": (
        "train",
        ["experiment=cartpole_dqn", "collector.init_random_frames=100000"],
        "collector.init_random_frames",
    ),
    "train negative seed": ("train", ["seed=-1"], "seed"),
    # Devices this host lacks (xdrl train), any named device (xdrl tune: Ray assigns GPUs).
    "train device cuda:7": ("train", ["resources.device=cuda:7"], "resources.device"),
    "train device cuda": ("train", ["resources.device=cuda"], "resources.device"),
    "tune device cuda": ("tune", ["resources.device=cuda"], "resources.device"),
    # Names that escape their directory.
    "train name with parents": ("train", ["name=../../etc"], "name"),
    "train run id with parents": ("train", ["logger.run_id=../x"], "logger.run_id"),
    "train run name with a separator": ("train", ["logger.run_name=a/b"], "logger.run_name"),
    "train group with a separator": ("train", ["logger.group=a/b"], "logger.group"),
    "train project with a separator": ("train", ["logger.project=a/b"], "logger.project"),
    "tune experiment name with a separator": ("tune", ["search.experiment_name=a/b"], "search.experiment_name"),
    "tune experiment name with parents": ("tune", ["search.experiment_name=../x"], "search.experiment_name"),
    # Output directories that cannot be one.
    "train output dir is a file": ("train", ["output_dir={file}"], "output_dir"),
    "train output dir below a file": ("train", ["output_dir={file}/run"], "output_dir"),
    "train output dir not writable": ("train", ["output_dir=/proc/1/run"], "output_dir"),
    "tune storage path below a file": ("tune", ["search.storage_path={file}/store"], "search.storage_path"),
    # Search spaces: inside the space and across keys; ASHA's settings.
    "tune interior value not a multiple": (
        "tune",
        ["search.space={collector:{frames_per_batch:{type:int,low:256,high:1024}}}", "hooks.eval.interval_frames=0"],
        "search.space.collector.frames_per_batch",
    ),
    "tune combination": (
        "tune",
        [
            "search.space={algo:{minibatch_size:{type:int,low:32,high:256}},"
            "collector:{frames_per_batch:{type:int,low:128,high:512}}}",
            "env.num_envs=1",
            "algo.minibatch_size=64",
            "hooks.eval.interval_frames=0",
        ],
        "search.space",
    ),
    "tune max_t below 1": ("tune", ["search.asha.max_t=0"], "search.asha.max_t"),
    "tune grace period beyond max_t": ("tune", ["search.asha.max_t=2"], "search.asha.grace_period"),
    "tune grace period beyond the run": (
        "tune",
        ["collector.total_frames=1024", "search.asha.grace_period=5"],
        "search.asha.grace_period",
    ),
    "tune reduction factor": ("tune", ["search.asha.reduction_factor=1"], "search.asha.reduction_factor"),
}

SKIPS = {
    "train device cuda:7": CUDA_DEVICES > 7,
    "train device cuda": CUDA_DEVICES > 0,
}


def _args(command, overrides, tmp_path):
    file = tmp_path / "file"
    if any("{file}" in o for o in overrides):
        file.write_text("not a directory\n")
    args = [o.replace("{tmp}", str(tmp_path)).replace("{file}", str(file)) for o in overrides]
    if command == "train" and not any(a.startswith("output_dir=") for a in args):
        args.append(f"output_dir={tmp_path / 'run'}")
    if command == "tune":
        if not any(a.startswith("experiment=") for a in args):
            args.insert(0, "experiment=cartpole_ppo")
        args.insert(1, "search=optuna")
        if not any(a.startswith("search.storage_path=") for a in args):
            args.append(f"search.storage_path={tmp_path / 'store'}")
    return args


def _assert_refused(case, code, stdout, stderr, tmp_path, before):
    _, _, key = CASES[case]
    assert code == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"xdrl: error: {key}="), stderr
    assert "is not accepted: expected " in lines[0]
    assert stdout == ""  # not even the run or experiment directory line
    assert not (tmp_path / "run").exists() and not (tmp_path / "store").exists()
    if (tmp_path / "file").exists():
        assert (tmp_path / "file").read_text() == "not a directory\n"
    assert {name: (REPO / name).exists() for name in before} == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    # The CLI's own entry point in this process (what the console script calls): an interpreter
    # start per case would cost seconds of imports each. Two cases below go through a real process.
    import ray

    from xdrl.cli import main

    if SKIPS.get(case):
        pytest.skip("this host has that device")
    command, overrides, _ = CASES[case]
    monkeypatch.chdir(REPO)  # relative defaults (runs/) resolve where a user runs xdrl
    before = {name: (REPO / name).exists() for name in ("runs", "outputs")}
    ray_before = ray.is_initialized()
    code = main([command, *_args(command, overrides, tmp_path)])
    captured = capsys.readouterr()
    _assert_refused(case, code, captured.out, captured.err, tmp_path, before)
    assert ray.is_initialized() == ray_before  # no Ray started


@pytest.mark.parametrize("case", ["train name with parents", "tune combination"])
def test_bad_input_through_the_console_process(case, tmp_path):
    command, overrides, _ = CASES[case]
    before = {name: (REPO / name).exists() for name in ("runs", "outputs")}
    result = run_xdrl(command, *_args(command, overrides, tmp_path), timeout=120)
    _assert_refused(case, result.returncode, result.stdout, result.stderr, tmp_path, before)
    assert "Started a local Ray instance" not in result.stdout + result.stderr


def test_resume_applies_typed_overrides_and_refuses_frozen_keys(tmp_path, capsys):
    from xdrl.cli import main

    run_dir = tmp_path / "run"
    base = ["experiment=cartpole_ppo", "collector.total_frames=512", "hooks.eval.interval_frames=0", "algo.lr=3e-4"]
    assert main(["train", *base, "logger=none", f"output_dir={run_dir}", "--no-progress"]) == 0
    config = run_dir / "config.yaml"
    stored = config.read_bytes()
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    capsys.readouterr()

    assert main(["train", "--resume", str(run_dir), "env.id=Acrobot-v1", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "xdrl: error: env.id='Acrobot-v1' is not accepted: expected the stored value 'CartPole-v1'"
    )
    assert "on --resume: the environment is part of the saved state" in lines[0]
    assert config.read_bytes() == stored and (run_dir / "metrics.jsonl").read_bytes() == metrics

    resume = ["train", "--resume", str(run_dir), "algo.lr=1e-3", "collector.total_frames=1024", "--no-progress"]
    assert main(resume) == 0
    assert "frames: 1024" in capsys.readouterr().out
    saved = yaml.safe_load(config.read_text())
    assert saved["algo"]["lr"] == 0.001 and isinstance(saved["algo"]["lr"], float)
    assert saved["collector"]["total_frames"] == 1024
    assert saved["logger"]["run_id"] == yaml.safe_load(stored)["logger"]["run_id"]


def test_resume_of_a_run_whose_checkpoints_cannot_be_read_is_refused_and_changes_nothing(tmp_path, capsys):
    from xdrl.cli import main

    run_dir = tmp_path / "run"
    base = ["experiment=cartpole_ppo", "collector.total_frames=512", "hooks.eval.interval_frames=0", "logger=none"]
    assert main(["train", *base, f"output_dir={run_dir}", "--no-progress"]) == 0
    # A checkpoint of an older xdrl (a plain torch.save payload), or a damaged one: none is readable.
    for path in (run_dir / "checkpoints").glob("trainer_*.pt"):
        torch.save({"format": 1, "iteration": 2}, path)
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "collector.total_frames=1024", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("xdrl: error: --resume=") and "none of its 1 checkpoint(s) could be read" in lines[-1]
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files  # config.yaml too
