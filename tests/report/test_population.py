"""``xdrl report`` and ``xdrl confirm`` on a real 3-member PBT search (CartPole PPO, 8 iterations of 64 frames).

The search metric is the learning rate in force (``hparams/algo.lr``, mode max), so members
exploit at every boundary they reach in the bottom quantile and lineages of several
generations form. The checks read the members' own records (``metrics.jsonl``,
``pbt_events.jsonl``, Tune's ``result.json``), not the report's code.
"""

import json

import pytest

from tests.distributed.helpers import results, trial_dirs
from tests.report.test_report import assert_png, snapshot
from xdrl.config import compose_config, validate
from xdrl.distributed import confirm, tuner
from xdrl.records.lineage import read_jsonl
from xdrl.report import population
from xdrl.report.build import build_report, terminal_summary
from xdrl.report.data import load_experiment

pytestmark = pytest.mark.slow

FRAMES = 64
KEYS = ["algo.lr", "algo.clip_epsilon", "algo.entropy_coef"]


def scheduled(entries, start):
    """The values in force for a batch starting at ``start`` frames (written here, not taken from xdrl)."""
    values = {}
    for entry in entries:
        if entry["frames"] <= start:
            values.update(entry["values"])
    return values


def hparams(row):
    return {key: row[f"hparams/{key}"] for key in KEYS}


@pytest.fixture(scope="module")
def pbt(local_ray, tmp_path_factory):
    storage = tmp_path_factory.mktemp("pbt")
    plan = tuner.plan(
        [
            "experiment=cartpole_ppo",
            "search=pbt",
            "search.num_samples=3",
            "search.max_concurrent_trials=3",
            "search.metric=hparams/algo.lr",
            "search.mode=max",
            "search.pbt.perturbation_interval=2",
            "checkpoint.interval=2",
            f"collector.frames_per_batch={FRAMES}",
            f"collector.total_frames={FRAMES * 8}",
            "algo.minibatch_size=64",
            "algo.epochs=1",
            "hooks.eval.interval_frames=0",
            "hooks.policy_checkpoint.interval=4",
            "logger=csv",
            f"search.storage_path={storage}",
            "search.experiment_name=pbt",
        ]
    )
    assert not tuner.run(plan).errors
    directory = storage / "pbt"
    events = [e for member in trial_dirs(directory) for e in read_jsonl(member / "pbt_events.jsonl")]
    assert events, "the learning-rate metric forces exploits"
    return directory


def test_lineage_schedules_give_the_values_every_row_of_the_lineage_trained_with(pbt):
    data = load_experiment(pbt)
    by_id = {t.trial_id: t for t in data.trials}
    for member in data.trials:
        schedule = population.lineage_schedule(data, member.trial_id)
        entries = schedule.entries
        frames = [e["frames"] for e in entries]
        assert frames[0] == 0 and frames == sorted(set(frames))
        own = read_jsonl(member.directory / "pbt_events.jsonl")
        # One entry per exploit in the trainer state's lineage: its generation.
        assert len(entries) == (own[-1]["generation"] if own else 0) + 1
        # The root starts from its first sampled values (Tune's first result), not params.json (rewritten).
        root = by_id[schedule.root]
        assert entries[0]["values"] == {k: results(root.directory)[0]["config"][k] for k in KEYS}
        # Every row of every trial in the lineage, in its part of the lineage, trained with the schedule's values.
        checked = 0
        for (trial_id, upto), following in zip(schedule.chain, [*schedule.chain[1:], None], strict=True):
            trial = by_id[trial_id]
            events = read_jsonl(trial.directory / "pbt_events.jsonl")
            linked = [e for e in events if upto is None or e["iteration"] < upto]
            start = linked[-1]["iteration"] if linked and trial_id != schedule.root else 0
            if following is not None:  # the next trial of the chain took this one's checkpoint of `upto`
                taken = read_jsonl(by_id[following[0]].directory / "pbt_events.jsonl")
                assert any(e["donor"] == trial_id and e["donor_iteration"] == upto for e in taken)
            for row in read_jsonl(trial.directory / "metrics.jsonl"):
                if start < row["counters/iter"] <= (upto or 10**9):
                    expected = scheduled(entries, row["counters/total_frames"] - FRAMES)
                    assert hparams(row) == pytest.approx(expected, rel=1e-6), (member.trial_id, trial_id, row)
                    checked += 1
        # Every iteration of the lineage, from frame 0 to the member's last: its length in batches.
        assert checked == schedule.frames // FRAMES


def test_report_shows_the_schedule_figure_the_lineage_and_the_final_population(pbt):
    before = snapshot(pbt)
    report = build_report(pbt)
    assert snapshot(pbt) == before  # reading never modifies the experiment
    assert_png(report.figures["pbt_schedule"], min_bytes=20_000)
    found = report.population
    assert found["keys"] == KEYS
    data = report.data

    # The lineage table: one row per event of every member, with the event's numbers and new values.
    expected = []
    for member in trial_dirs(pbt):
        trial_id = member.name.split("_")[2] + "_" + member.name.split("_")[3]
        for event in read_jsonl(member / "pbt_events.jsonl"):
            expected.append((trial_id, event["iteration"], event["frames"], event["donor"], event["generation"]))
            (row,) = [
                r for r in found["lineage"] if (r["member"], r["after iteration"]) == (trial_id, event["iteration"])
            ]
            assert row["donor iteration"] == event["donor_iteration"]
            for key in KEYS:
                assert row[f"new {key}"] == pytest.approx(event["hparams"][f"hparams/{key}"], rel=1e-6)
    lineage = [(r["member"], r["after iteration"], r["frames"], r["donor"], r["generation"]) for r in found["lineage"]]
    assert sorted(lineage) == sorted(expected)

    # The final population: each member's last row, best final metric first.
    final = found["final"]
    assert len(final) == 3
    lrs = [row["final hparams/algo.lr"] for row in final]
    assert lrs == sorted(lrs, reverse=True)
    for row in final:
        (member,) = [d for d in trial_dirs(pbt) if row["member"] in d.name]
        rows = read_jsonl(member / "metrics.jsonl")
        events = read_jsonl(member / "pbt_events.jsonl")
        assert row["frames"] == rows[-1]["counters/total_frames"]
        assert row["iterations"] == len(rows) == 8 and row["exploits"] == len(events)
        assert row["generation"] == (events[-1]["generation"] if events else 0)
        for key in KEYS:
            assert row[f"final {key}"] == rows[-1][f"hparams/{key}"]

    # The best member's schedule, and a train line that composes into exactly that schedule.
    best = found["best"]
    assert best == final[0]["member"]
    schedule = population.lineage_schedule(data, best)
    assert found["schedule"].entries == schedule.entries
    command = found["command"]
    override = command.split("'")[1]
    assert override.startswith("schedule=[")
    assert f"collector.total_frames={schedule.frames}" in command  # the lineage's length
    composed = validate(
        compose_config(["experiment=cartpole_ppo", f"collector.total_frames={schedule.frames}", override])
    )
    assert [{"frames": e.frames, "values": e.values} for e in composed.config.schedule] == schedule.entries

    markdown = report.markdown.read_text()
    assert "## Population-based training (PBT)" in markdown
    assert "![Hyperparameter schedule](pbt_schedule.png)" in markdown
    assert command in markdown and f"Member `{best}` has the best final `hparams/algo.lr`" in markdown
    for member, iteration, frames, donor, _generation in expected:
        assert f"| {member} | {iteration} | {frames} | {donor} |" in markdown
    assert f"| {final[0]['member']} | TERMINATED |" in markdown.split("### Final population")[1]
    assert f"best member (final hparams/algo.lr): {best}" in terminal_summary(report)


def test_confirm_reruns_every_members_lineage_schedule(pbt):
    summary = confirm.confirm(pbt, top=3, seeds=2, episodes=2)
    assert summary["rerun"] == "schedule"
    data = load_experiment(pbt)
    ranked = [t.trial_id for t in population.ranked_members(data)]
    assert [row["search_trial"] for row in summary["candidates"]] == ranked
    schedules = [row["params"]["schedule"] for row in summary["candidates"]]
    assert schedules == [population.lineage_schedule(data, member).entries for member in ranked]
    assert max(len(s) for s in schedules) > 1, "some member's lineage has an exploit"
    text = confirm.render(summary)
    assert text.startswith("Population-based search: each member's schedule re-ran")
    assert "frames 0: algo.lr=" in text
    for row in summary["candidates"]:
        assert len(row["returns"]) == 2

    # The confirmation trials trained with the schedule: their hparams/* rows follow it, iteration by iteration.
    runs = trial_dirs(pbt.parent / "pbt-confirm")
    assert len(runs) == 6
    for run in runs:
        candidate = json.loads((run / "params.json").read_text())["xdrl_candidate"]
        entries = schedules[candidate]
        rows = read_jsonl(run / "metrics.jsonl")
        length = summary["candidates"][candidate]["params"]["collector.total_frames"]  # the lineage's frames
        assert [row["counters/iter"] for row in rows] == list(range(1, length // FRAMES + 1))
        assert rows[-1]["counters/total_frames"] == length
        for row in rows:
            expected = scheduled(entries, row["counters/total_frames"] - FRAMES)
            assert hparams(row) == pytest.approx(expected, rel=1e-6), (run.name, row["counters/iter"])
    assert "Population-based search: each member's schedule re-ran" in build_report(pbt).markdown.read_text()
