"""Population-based training (``search.scheduler`` ``pbt`` or ``pb2``) as its records tell it.

Per member (trial): the values in force at every iteration (``hparams/<key>`` rows of
``metrics.jsonl``, over ``counters/total_frames``) and its exploits (``pbt_events.jsonl``).
From them: the lineage table (every exploit), the final population, and the *schedule* of a
member's lineage, which ``xdrl confirm`` re-runs with the ``schedule`` config key.

A member's schedule is built backwards: the values it took at its last exploit, in force
from the frames it continued from; before that, its donor's schedule up to the donor's
iteration it copied (the donor's own exploits before that iteration, recursively); the root
of the lineage starts from its first sampled values at frame 0. Sampled values come from
Tune's result rows (each carries the trial's config), not from ``params.json``, which Tune
rewrites with a member's values at each exploit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from xdrl.config.search import POPULATION_SCHEDULERS, parse_dimensions
from xdrl.records.experiment import PBT_EVENTS, quote_value, train_command
from xdrl.records.lineage import FRAMES, HPARAMS, read_jsonl
from xdrl.report.confirmation import describe_entry
from xdrl.report.data import ExperimentData, Trial


def is_population_based(data: ExperimentData) -> bool:
    """Whether the experiment ran PBT or PB2."""
    return data.search.get("scheduler") in POPULATION_SCHEDULERS


def mutated_keys(data: ExperimentData) -> list[str]:
    """The keys ``search.pbt.mutations`` changes (dotted, as in ``hooks.hparams``)."""
    return [d.key for d in parse_dimensions(data.search["pbt"]["mutations"], "search.pbt.mutations")]


def events(trial: Trial) -> list[dict[str, Any]]:
    """The member's exploits, in the order of its own iterations."""
    if trial.directory is None:
        return []
    return sorted(read_jsonl(trial.directory / PBT_EVENTS), key=lambda e: int(e["iteration"]))


def _values(hparams: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {key: hparams[HPARAMS + key] for key in keys if HPARAMS + key in hparams}


def config_at(trial: Trial, iteration: int) -> dict[str, Any] | None:
    """The sampled values the member trained its ``iteration`` with (Tune's result rows carry them)."""
    for row in trial.results:
        if int(row.get("training_iteration", -1)) == iteration and isinstance(row.get("config"), dict):
            return row["config"]
    return None


def first_config(trial: Trial) -> dict[str, Any]:
    """The member's first sampled values. Not ``params.json``: Tune rewrites it with the values of each exploit."""
    first = config_at(trial, 1)
    return dict(first if first is not None else trial.params)


def exploit_values(trial: Trial, event: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The values the member took at an exploit: its config after it (exact), else what its trainer held (``hparams``)."""
    config = config_at(trial, int(event["iteration"]) + 1) or {}
    held = _values(event.get("hparams", {}), keys)
    return {key: config.get(key, held.get(key)) for key in keys if key in config or key in held}


def lineage_table(data: ExperimentData, keys: list[str]) -> list[dict[str, Any]]:
    """Every exploit: member, at which of its iterations and frames, donor, donor's iteration, generation, new values."""
    rows = []
    for trial in data.trials:
        for event in events(trial):
            rows.append(
                {
                    "member": trial.trial_id,
                    "after iteration": int(event["iteration"]),
                    "frames": event["frames"],
                    "donor": event["donor"],
                    "donor iteration": event["donor_iteration"],
                    "generation": event["generation"],
                    **{f"new {k}": v for k, v in _values(event.get("hparams", {}), keys).items()},
                }
            )
    rows.sort(key=lambda r: (r["member"], r["after iteration"]))
    return rows


def final_metric(trial: Trial, metric: str) -> float | None:
    """The member's last value of the search metric: what PBT ranks members by."""
    return trial.last(metric)


def ranked_members(data: ExperimentData) -> list[Trial]:
    """Members with a final search metric, best first (in the search's mode)."""
    metric, mode = data.metrics[0], data.modes[0]
    members = [t for t in data.trials if final_metric(t, metric) is not None]
    return sorted(members, key=lambda t: final_metric(t, metric), reverse=mode == "max")


def final_population(data: ExperimentData, keys: list[str]) -> list[dict[str, Any]]:
    """Per member, best final search metric first: its final values, final metric, frames, generation, exploits."""
    metric = data.metrics[0]
    ranked = ranked_members(data)
    order = ranked + [t for t in data.trials if t not in ranked]
    rows = []
    for trial in order:
        last = trial.rows[-1] if trial.rows else (trial.results[-1] if trial.results else {})
        member_events = events(trial)
        rows.append(
            {
                "member": trial.trial_id,
                "status": trial.status,
                **{f"final {k}": v for k, v in _values(last, keys).items()},
                f"final {metric}": final_metric(trial, metric),
                "frames": int(last.get(FRAMES, 0)),
                "iterations": len(trial.rows),
                "generation": int(member_events[-1]["generation"]) if member_events else 0,
                "exploits": len(member_events),
            }
        )
    return rows


@dataclasses.dataclass
class LineageSchedule:
    """The schedule of a member's lineage, as the ``schedule`` config key takes it."""

    #: The member whose final schedule this is.
    member: str
    #: The first member of the lineage: its first sampled values are the run's config.
    root: str
    root_params: dict[str, Any]
    #: ``[{"frames": F, "values": {key: value}}]``, ascending frames, the first at frame 0.
    entries: list[dict[str, Any]]
    #: The lineage, from the root: ``(member, its last iteration in the lineage or None for the member)``.
    chain: list[tuple[str, int | None]]
    #: The frames the member's trainer ended at: the lineage's length (a member's budget is its own
    #: iterations, and at an exploit it continued from the donor's frames).
    frames: int | None = None


def lineage_schedule(data: ExperimentData, member: str, keys: list[str] | None = None) -> LineageSchedule:
    """The values the member's trainer state was trained with, frame by frame, back to the root of its lineage.

    Raises:
        KeyError: a donor the experiment directory has no records of.
    """
    keys = mutated_keys(data) if keys is None else keys
    by_id = {t.trial_id: t for t in data.trials}
    final_rows = by_id[member].rows
    final_frames = int(final_rows[-1][FRAMES]) if final_rows and FRAMES in final_rows[-1] else None
    chain: list[tuple[str, int | None]] = []
    # Walk back: (trial, the iteration of its own clock its part of the lineage ends at; None: all of it).
    pieces: list[tuple[int, dict[str, Any]]] = []  # (frames, values) from the newest exploit back
    trial, upto = by_id[member], None
    while True:
        chain.append((trial.trial_id, upto))
        # The state at iteration ``upto`` holds the exploits made after earlier iterations only.
        taken = [e for e in events(trial) if upto is None or int(e["iteration"]) < upto]
        if not taken:
            break
        last = taken[-1]
        pieces.append((int(last["frames"]), exploit_values(trial, last, keys)))
        trial, upto = by_id[last["donor"]], int(last["donor_iteration"])
    root_params = first_config(trial)
    pieces.append((0, {key: root_params[key] for key in keys if key in root_params}))
    entries: list[dict[str, Any]] = []
    for frames, values in reversed(pieces):
        if entries and frames <= entries[-1]["frames"]:  # a later exploit at the same frames wins
            entries[-1]["values"] = {**entries[-1]["values"], **values}
        else:
            entries.append({"frames": frames, "values": values})
    return LineageSchedule(member, trial.trial_id, root_params, entries, list(reversed(chain)), final_frames)


def _hydra(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def schedule_override(entries: list[dict[str, Any]]) -> str:
    """The ``schedule=...`` override of ``xdrl train`` (Hydra's grammar), quoted for a shell.

    Examples:
        >>> schedule_override([{"frames": 0, "values": {"algo.lr": 0.001}}, {"frames": 64, "values": {"algo.lr": 0.002}}])
        "'schedule=[{frames:0,values:{algo.lr:0.001}},{frames:64,values:{algo.lr:0.002}}]'"
    """
    pieces = []
    for entry in entries:
        values = ",".join(f"{k}:{_hydra(v)}" for k, v in entry["values"].items())
        pieces.append(f"{{frames:{int(entry['frames'])},values:{{{values}}}}}")
    text = ",".join(pieces)
    return quote_value(f"schedule=[{text}]")


def schedule_command(overrides: list[str], schedule: LineageSchedule, keys: list[str]) -> str:
    """The ``xdrl train`` line that re-runs a member's lineage: the root's other sampled values, its length, the schedule."""
    fixed = {k: v for k, v in schedule.root_params.items() if k not in keys}
    if schedule.frames is not None:
        fixed["collector.total_frames"] = schedule.frames
    return f"{train_command(overrides, fixed)} {schedule_override(schedule.entries)}"


def describe_schedule(entries: list[dict[str, Any]]) -> list[str]:
    """One line per entry: ``frames 512: algo.lr=0.0007, ...``.

    Examples:
        >>> describe_schedule([{"frames": 0, "values": {"algo.lr": 0.001, "algo.epochs": 4}}])
        ['frames 0: algo.lr=0.001 algo.epochs=4']
    """
    return [describe_entry(entry) for entry in entries]
