"""What changed between two versions of a DAG, and what must be rebuilt because of it (SPEC §6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trace_core.dag.config import DagConfig, Job
from trace_core.idempotency import fingerprint

# A change to any of these changes what a job writes, so the job and everything downstream are rebuilt.
# `activation` is here too: a job that turns from reactive into a source (or back) writes different data.
MATERIALIZATION_FIELDS = (
    "activation",
    "operator",
    "runtime",
    "config",
    "inputs",
    "outputs",
    "execution_strategy",
    "update_strategy",
)
# These change how a job runs, not what it writes: they apply at once, with no rebuild. `unique_key` is
# part of `outputs`, so it is materialization-affecting through it. DAG-level `publish` and
# `worker_pools` are execution-only as well.
EXECUTION_FIELDS = ("scaling", "worker_pool", "timeout_s", "max_attempts")


def _field_values(job: Job, fields: tuple[str, ...]) -> dict[str, Any]:
    dumped = job.model_dump(mode="json", by_alias=True)
    return {name: dumped[name] for name in fields}


def materialization_fingerprint(job: Job) -> bytes:
    """SHA-256 of a job's materialization-affecting fields; equal for jobs that write the same data."""
    return fingerprint(_field_values(job, MATERIALIZATION_FIELDS))


@dataclass(frozen=True, slots=True)
class DagDiff:
    added: frozenset[str]
    removed: frozenset[str]
    # job -> materialization-affecting fields that changed (added jobs: every field)
    materialization_changed: dict[str, tuple[str, ...]]
    # job -> execution-only fields that changed, for jobs whose materialization did not change
    execution_changed: dict[str, tuple[str, ...]]
    # jobs that get new dataset versions: materialization_changed and every job downstream of one
    rebuild: frozenset[str]
    publish_changed: bool
    worker_pools_changed: frozenset[str]

    @property
    def is_empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.materialization_changed
            or self.execution_changed
            or self.publish_changed
            or self.worker_pools_changed
        )


def diff(old: DagConfig, new: DagConfig) -> DagDiff:
    """Compare two versions of one DAG; `rebuild` is the downstream closure of the changed jobs in `new`."""
    added = frozenset(new.jobs) - frozenset(old.jobs)
    removed = frozenset(old.jobs) - frozenset(new.jobs)
    materialization: dict[str, tuple[str, ...]] = {name: MATERIALIZATION_FIELDS for name in sorted(added)}
    execution: dict[str, tuple[str, ...]] = {}
    for name in sorted(frozenset(old.jobs) & frozenset(new.jobs)):
        before, after = old.jobs[name], new.jobs[name]
        changed = _changed_fields(before, after, MATERIALIZATION_FIELDS)
        if changed:
            materialization[name] = changed
            continue
        changed = _changed_fields(before, after, EXECUTION_FIELDS)
        if changed:
            execution[name] = changed
    pools = frozenset(old.worker_pools) | frozenset(new.worker_pools)
    return DagDiff(
        added=added,
        removed=removed,
        materialization_changed=materialization,
        execution_changed=execution,
        rebuild=downstream_closure(new, frozenset(materialization)),
        publish_changed=old.publish != new.publish,
        worker_pools_changed=frozenset(p for p in pools if old.worker_pools.get(p) != new.worker_pools.get(p)),
    )


def _changed_fields(before: Job, after: Job, fields: tuple[str, ...]) -> tuple[str, ...]:
    old_values, new_values = _field_values(before, fields), _field_values(after, fields)
    return tuple(name for name in fields if old_values[name] != new_values[name])


def downstream_closure(config: DagConfig, roots: frozenset[str]) -> frozenset[str]:
    """`roots` and every job of `config` that reads, directly or not, from one of them."""
    readers: dict[str, list[str]] = {name: [] for name in config.jobs}
    for name in config.jobs:
        for upstream in config.upstream_jobs(name):
            readers[upstream].append(name)
    closure = set(roots & frozenset(config.jobs))
    frontier = list(closure)
    while frontier:
        for reader in readers[frontier.pop()]:
            if reader not in closure:
                closure.add(reader)
                frontier.append(reader)
    return frozenset(closure)
