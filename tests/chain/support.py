"""Helpers of the chain suites: DAGs around block_follower, and what its run emitted."""

from __future__ import annotations

from typing import Any

from tests.support.devchain import Devchain
from tests.support.stack import Stack

FOLLOWER = """
dag: {dag}
jobs:
  blocks:
    activation: source
    operator: block_follower
    max_attempts: {max_attempts}
    config: {{rpc_url: "{rpc_url}", confirmations: {confirmations}, start_block: 0, poll_interval_s: 0.05,
              batch_blocks: {batch_blocks}, rpc_retries: {rpc_retries}, rpc_timeout_s: 2}}
{more}"""


def follower_dag(
    rpc_url: str,
    *,
    dag: str = "chain",
    confirmations: int = 2,
    max_attempts: int = 20,
    batch_blocks: int = 10,
    rpc_retries: int = 2,
    more: str = "",
) -> str:
    return FOLLOWER.format(
        dag=dag,
        rpc_url=rpc_url,
        confirmations=confirmations,
        max_attempts=max_attempts,
        batch_blocks=batch_blocks,
        rpc_retries=rpc_retries,
        more=more,
    )


def emitted(stack: Stack, job: str = "blocks", dag: str | None = None) -> list[dict[str, Any]]:
    """The events `job`'s tasks emitted on output 0, in order: kind, range, cursor, payload."""
    return stack.sql(
        """SELECT e.kind, e.range_start AS start, e.range_end AS "end", e.scope_cursor AS cursor, e.payload
           FROM events e JOIN tasks t ON t.task_id = e.producer_task_id JOIN jobs j ON j.job_id = t.job_id
           JOIN dags d ON d.dag_id = j.dag_id JOIN datasets ds ON ds.dataset_uuid = e.dataset_uuid
           WHERE j.job_name = %(job)s AND ds.output_index = 0 AND (%(dag)s::text IS NULL OR d.dag_name = %(dag)s)
           ORDER BY e.event_id""",
        {"job": job, "dag": dag},
    )


def blocks_seen(events: list[dict[str, Any]]) -> dict[int, str]:
    """Block number → hash as a consumer that applies the events in order ends up believing."""
    believed: dict[int, str] = {}
    for event in events:
        if event["kind"] == "invalidation":
            for number in range(event["start"], event["end"] + 1):
                believed.pop(number, None)
        else:
            believed[event["start"]] = event["payload"]["hash"]
    return believed


def canonical(chain: Devchain, last: int) -> dict[int, str]:
    """Block number → hash of blocks 0..last on the chain now."""
    return {n: chain.rpc("eth_getBlockByNumber", hex(n), False)["hash"] for n in range(last + 1)}


def assert_in_order_without_gaps(events: list[dict[str, Any]]) -> None:
    """Data events follow each other block by block; an invalidation moves the next block back to its start."""
    expected = 0
    for event in events:
        if event["kind"] == "invalidation":
            assert event["start"] <= expected, event
            expected = event["start"]
            continue
        assert (event["start"], event["end"]) == (expected, expected), f"block {event['start']}, expected {expected}"
        assert event["cursor"].endswith(event["payload"]["hash"])
        expected += 1
