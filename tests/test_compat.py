"""Every library internal behind ``xdrl._compat`` still behaves as the release it was verified on.

One test per access: when an upgrade of TorchRL, torch, Ray, W&B or Python changes one, it
fails here, named after what changed.
"""

import inspect
import multiprocessing.util

import torch

from tests.helpers import tiny, wait_until_finished
from xdrl import _compat
from xdrl.builder.experiment import build_algorithm, prepare_process
from xdrl.config import compose_config, validate


def _trainer(preset="cartpole_ppo", *extra):
    validated = validate(compose_config(tiny(preset, "logger=none", *extra)))
    prepare_process(validated.config)
    return build_algorithm(validated, "cpu").trainer


def test_trainer_stages_are_lists_of_op_and_kwargs_and_a_first_op_runs_first():
    trainer = _trainer()
    for stage in ("batch_process", "shutdown"):
        ops = _compat.stage_ops(trainer, stage)
        assert isinstance(ops, list) and all(len(entry) == 2 and callable(entry[0]) for entry in ops)
    order = []
    trainer.register_op("batch_process", lambda batch: order.append("appended") or batch)
    _compat.register_op_first(trainer, "batch_process", lambda batch: order.append("first") or batch)
    trainer.register_op("shutdown", lambda: order.append("shutdown appended"))
    _compat.register_op_first(trainer, "shutdown", lambda: order.append("shutdown first"))
    trainer.train()
    assert order[:2] == ["first", "appended"]
    assert order[-2:] == ["shutdown first", "shutdown appended"]


def test_train_is_replaceable_on_an_instance():
    trainer = _trainer()
    calls = []

    def wrapper(original):
        def train():
            calls.append("before")
            return original()

        return train

    _compat.wrap_train(trainer, wrapper)
    trainer.train()
    assert calls == ["before"] and trainer.collected_frames == 512


def test_scheduler_last_lr_is_what_get_last_lr_returns():
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.5, total_iters=2)
    _compat.set_scheduler_last_lr(scheduler, [0.25])
    assert scheduler.get_last_lr() == [0.25]


def test_wandb_logger_step_registry_and_deferred_commits(tmp_path):
    from torchrl.record.loggers.wandb import WandbLogger

    from xdrl.records.wandb_files import find_run_files, read_run

    logger = WandbLogger(exp_name="compat", offline=True, save_dir=str(tmp_path), log_env_packages=False)
    before = _compat.wandb_step_registry(logger)
    # What the flush hook relies on: commit=False reaches wandb.Run.log from log_scalar (a parameter)
    # and from log_histogram / log_video (through their **kwargs), so one iteration is one row.
    logger.log_scalar("a/b", 1.0, step=5, commit=False)
    logger.log_histogram("h", torch.arange(10.0), bins=4, step=5, commit=False)
    assert _compat.wandb_step_registry(logger) != before
    logger.experiment.log({}, commit=True)
    logger.experiment.finish()
    (path,) = find_run_files(tmp_path)
    (row,) = read_run(wait_until_finished(path)).history
    assert row["a/b"] == 1.0 and row["h/_type"] == "histogram"  # both in one row


def test_multiprocessing_finalizers_run_on_request():
    ran = []

    class Resource:
        pass

    resource = Resource()
    multiprocessing.util.Finalize(resource, ran.append, args=("done",), exitpriority=0)
    _compat.run_multiprocessing_finalizers()
    assert ran == ["done"]


def test_tune_function_trainable_is_a_trainable_class_with_setup_and_cleanup():
    from ray.tune import Trainable

    base = _compat.function_trainable_base(lambda config: None)
    assert isinstance(base, type) and issubclass(base, Trainable)
    assert callable(base.setup) and callable(base.cleanup)


def test_tune_logger_callbacks_restore_files_through_one_method(tmp_path):
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.logger.logger import LoggerCallback

    assert list(inspect.signature(LoggerCallback._restore_from_remote).parameters) == ["self", "file_name", "trial"]

    class Trial:
        local_path = str(tmp_path)
        checkpoint = object()  # Tune copies files back only for a trial that has a checkpoint

    class Kept(_compat.KeepDriverLogCopy, JsonLoggerCallback):
        pass

    (tmp_path / "result.json").write_text('{"training_iteration": 1}\n')
    _compat.restore_logger_file(Kept(), "result.json", Trial())  # the driver's own copy stays
    assert (tmp_path / "result.json").read_text() == '{"training_iteration": 1}\n'


def test_wandb_offline_run_file_layout(tmp_path):
    import wandb

    from xdrl.records.wandb_files import find_run_files, read_run

    run = wandb.init(mode="offline", dir=str(tmp_path), project="compat", settings={"console": "off"})
    run.log({"x": 1.5})
    run.finish()
    (path,) = find_run_files(tmp_path)
    data = wait_until_finished(path).read_bytes()
    layout = _compat.WANDB_RUN_FILE
    assert data[:4] == layout["header"] and len(data) > layout["header_size"]
    assert data[4:6] == bytes([0xE1, 0xBE])  # the magic 0xBEE1, little-endian
    assert _compat.wandb_record_class().__name__ == "Record"
    records = read_run(path)
    assert records.history[0]["x"] == 1.5 and records.exit_code == 0


def test_pbt_exploit_hands_over_a_result_whose_iteration_the_member_keeps(tmp_path):
    import inspect

    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial
    from ray.tune.schedulers.pbt import PopulationBasedTraining, _PBTTrialState
    from ray.tune.trainable import Trainable

    member = Trial("xdrl_compat", config={"algo.lr": 1e-3}, stub=True)
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        metric="m",
        mode="max",
        perturbation_interval=4,
        hyperparam_mutations={"algo.lr": [1e-3, 2e-3]},
    )
    state = _PBTTrialState(member)
    state.last_result = {"training_iteration": 8, "m": 1.0}
    scheduler._trial_state[member] = state
    # What PopulationBasedTraining._exploit hands the member: the donor's checkpoint and last result.
    assert "_latest_checkpoint_result" in inspect.getsource(PopulationBasedTraining._exploit)
    donor = _TrainingResult(
        checkpoint=Checkpoint.from_directory(str(tmp_path)), metrics={"training_iteration": 12, "m": 2.0}
    )
    member.run_metadata.checkpoint_manager._latest_checkpoint_result = donor
    _compat.member_keeps_its_clock(scheduler, member)
    handed = member.run_metadata.checkpoint_manager._latest_checkpoint_result
    assert handed.checkpoint is donor.checkpoint and handed.metrics == {"training_iteration": 8, "m": 2.0}
    assert state.last_train_time == state.last_perturbation_time == 8
    # ... and a restored trainable counts on from the handed result's iteration.
    assert "checkpoint_metrics.get(TRAINING_ITERATION" in inspect.getsource(Trainable.restore)
