"""Catch-up and cutover (SPEC §6), driven by the leader's rebuild loop (`loops/rebuilds.py`).

A rebuild catches up in rounds. A round has a target: the newest event id when it began. The events its jobs read
from outside the rebuild (unchanged upstream jobs, other DAGs) or from a rebuilt source, up to the target, become
tasks of the rebuilding jobs (the backfill, in slices); newer such events wait in Postgres for the next round or
the cutover. What the rebuild's reactive jobs emit reaches its downstream jobs through the router at once: it all
derives from the round's work. A rebuild has caught up with its round when every task of its jobs completed, no
event they read is left unrouted, and each rebuilt source has ended or reached the head of the version it replaces.

Then it cuts over if the round began at most TRACE_CUTOVER_LAG_S ago or nothing arrived since its target (and, with
a rebuilt source, the round began after the source caught up, so it took the source's history); otherwise a new
round takes what arrived meanwhile. Rounds shorten as long as the rebuild is faster than its input.

The cutover is one transaction: it checks again that the rebuild caught up, publishes the version's names, swaps
the DAG's active version and pointer set with a compare-and-swap on the pointer set the rebuild replaces, and
turns the events that waited into tasks of the new version (the drain). A crash anywhere before the commit leaves
the old version and pointer set; after it, the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg

from dispatcher.lifecycle import serving
from dispatcher.loops.context import LoopContext
from dispatcher.repositories import lifecycle as repo
from trace_core.db.pool import Pool
from trace_core.db.queries import Row
from trace_core.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Rebuild:
    dag_id: UUID
    org_id: UUID
    dag_name: str
    active_pointer_set_id: UUID
    version_id: UUID
    version: int
    target: int
    backfilled: int
    round: int
    round_is_recent: bool
    rebuilds_sources: bool
    error: str | None

    @classmethod
    def from_row(cls, row: Row) -> Rebuild:
        return cls(
            dag_id=row["dag_id"],
            org_id=row["org_id"],
            dag_name=row["dag_name"],
            active_pointer_set_id=row["active_pointer_set_id"],
            version_id=row["dag_version_id"],
            version=row["version"],
            target=row["rebuild_target_event_id"],
            backfilled=row["rebuild_backfilled_event_id"],
            round=row["rebuild_round"],
            round_is_recent=bool(row["round_is_recent"]),
            rebuilds_sources=row["rebuilds_sources"],
            error=row["rebuild_error"],
        )


async def advance_rebuilds(ctx: LoopContext) -> bool:
    """One pass over every rebuild in progress; True when it changed something (tasks, a round, a cutover)."""
    async with ctx.pool.connection() as conn:
        rows = await repo.rebuilding_versions(conn, ctx.settings.cutover_lag_s)
    changed = False
    for row in rows:
        rebuild = Rebuild.from_row(row)
        try:
            changed = await _advance(ctx, rebuild) or changed
        except psycopg.Error:
            # one rebuild's failure must not stop the others, nor the leader's router and scheduler (a loop that
            # raises makes the leader step down); the next pass tries again
            log.exception("dispatcher.rebuild.pass_failed", dag=rebuild.dag_name, version=rebuild.version)
    if changed:
        ctx.notifications.publish("trace_tasks")
    return changed


async def _advance(ctx: LoopContext, rebuild: Rebuild) -> bool:
    if rebuild.backfilled < rebuild.target:
        return await _backfill(ctx, rebuild)
    async with ctx.pool.connection() as conn:
        blockers = await repo.rebuild_blockers(conn, rebuild.version_id, rebuild.active_pointer_set_id, rebuild.target)
        if not blockers.caught_up:
            return False
        if not may_cut_over(rebuild.round, rebuild.rebuilds_sources) or (
            not rebuild.round_is_recent and await repo.events_after_target(conn, rebuild.version_id, rebuild.target)
        ):
            async with conn.transaction():
                begun = await repo.begin_rebuild_round(conn, rebuild.version_id, rebuild.round)
            if begun is not None:
                log.info(
                    "dispatcher.rebuild.round_started",
                    dag=rebuild.dag_name,
                    version=rebuild.version,
                    round=begun["rebuild_round"],
                    target_event_id=begun["rebuild_target_event_id"],
                )
            return begun is not None
    return await cut_over(ctx.pool, rebuild)


def may_cut_over(round_number: int, rebuilds_sources: bool) -> bool:
    """A round's work ends at its target, set when it began. A rebuilt source emits from its start, so the first
    round held all its output back: only a round that began after the sources caught up holds their history."""
    return round_number > 1 or not rebuilds_sources


async def _backfill(ctx: LoopContext, rebuild: Rebuild) -> bool:
    """Turn the round's events from outside the rebuild into tasks, a slice per transaction. Each slice holds the
    routing lock, so every router pass that routed one of its events without this rebuild has committed."""
    async with ctx.pool.connection() as conn:
        jobs = [job.job_id for job in (await repo.version_jobs(conn, rebuild.version_id)).values() if job.rebuilds]
    after, created = rebuild.backfilled, 0
    while after < rebuild.target:
        through = min(after + ctx.settings.backfill_batch, rebuild.target)
        async with ctx.pool.connection() as conn, conn.transaction():
            await repo.lock_routing(conn)
            if not await repo.claim_backfill(conn, rebuild.version_id, after, through):
                return created > 0  # the rebuild ended (cutover, rollback, superseded) meanwhile
            created += await repo.backfill_tasks(
                conn, rebuild.version_id, jobs, held_only=True, after=after, through=through
            )
        after = through
    log.info(
        "dispatcher.rebuild.backfilled",
        dag=rebuild.dag_name,
        version=rebuild.version,
        round=rebuild.round,
        through_event_id=rebuild.target,
        tasks=created,
    )
    return True


async def cut_over(pool: Pool, rebuild: Rebuild) -> bool:
    """Check and swap in one transaction; False when the rebuild is not (or no longer) ready."""
    try:
        async with pool.connection() as conn, conn.transaction():
            await repo.lock_routing(conn)
            state = await repo.lock_dag_state(conn, rebuild.dag_id)
            if state is None or state.rebuilding_version_id != rebuild.version_id:
                return False
            blockers = await repo.rebuild_blockers(
                conn, rebuild.version_id, state.active_pointer_set_id, rebuild.target
            )
            if not blockers.caught_up:
                return False
            assert state.rebuilding_config is not None
            config = serving.stored_config(state.rebuilding_config)
            pointer_set = await repo.version_pointer_set(conn, rebuild.version_id)
            assert pointer_set is not None
            await serving.publish_version(conn, rebuild.org_id, rebuild.dag_id, config)
            if not await repo.swap_active(
                conn,
                rebuild.dag_id,
                rebuild.version_id,
                pointer_set["pointer_set_id"],
                pointer_set["replaces_pointer_set_id"],
                rebuild.version_id,
            ):
                raise _StaleRebuildError(
                    f"the DAG no longer serves the pointer set this rebuild replaces; deploy again (version "
                    f"{rebuild.version} was built against another pointer set)"
                )
            await repo.set_version_status(conn, state.active_version_id, "retired")
            await repo.set_version_status(conn, rebuild.version_id, "active")
            new_jobs = await repo.version_jobs(conn, rebuild.version_id)
            old_jobs = await repo.version_jobs(conn, state.active_version_id)
            drained = await repo.backfill_tasks(
                conn,
                rebuild.version_id,
                [job.job_id for job in new_jobs.values() if job.rebuilds],
                held_only=True,
                after=rebuild.target,
                through=None,
            )
            served = {job.job_id for job in new_jobs.values()}
            # jobs leaving service keep their waiting tasks (a rollback may bring them back); a source stops
            await repo.end_live_tasks(
                conn,
                [job.job_id for job in old_jobs.values() if job.job_id not in served],
                f"retired: version {rebuild.version} no longer runs this job",
                sources_only=True,
            )
            await serving.sync_worker_pools(conn, rebuild.org_id, rebuild.dag_id, config)
    except (serving.PublishConflictError, _StaleRebuildError) as blocked:
        await _record_error(pool, rebuild, f"the cutover is blocked: {blocked}")
        return False
    log.info(
        "dispatcher.dag.cutover",
        dag=rebuild.dag_name,
        version=rebuild.version,
        replaced_version=state.active_version,
        rounds=rebuild.round,
        drained_tasks=drained,
    )
    return True


async def _record_error(pool: Pool, rebuild: Rebuild, error: str) -> None:
    """Say why the rebuild is stuck (`GET /v1/dags/{dag}` shows it); log and record each new reason once."""
    if error != rebuild.error:
        log.warning("dispatcher.rebuild.stuck", dag=rebuild.dag_name, version=rebuild.version, error=error)
        async with pool.connection() as conn:
            await repo.set_rebuild_error(conn, rebuild.version_id, error)


class _StaleRebuildError(Exception):
    """The rebuild's compare-and-swap failed: what it would replace is not what the DAG serves."""
