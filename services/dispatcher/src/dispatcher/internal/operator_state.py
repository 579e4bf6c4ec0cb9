"""`/internal/operator-state`: the durable state of a task's job, for stateful operators that run in a worker
(block_follower, and any operator using `ctx.load_state`/`ctx.save_state`), which reach it through the worker
wrapper. range_aggregator and range_splitter run in the dispatcher and use the state table directly
(`loops/operators.py`).

Workers hold no database credentials, so the state lives behind the attempt gate like every other call of an
attempt. A save is a compare-and-swap on `revision` that stores the events the new state accounts for in the
same transaction: a crash or a lost answer leaves either both or neither, so an operator that resumes from
its stored state never loses an event nor emits one twice.
"""

from __future__ import annotations

from litestar.exceptions import ClientException
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_412_PRECONDITION_FAILED

from dispatcher.internal.service import check_outputs, gate_attempt
from dispatcher.notifications import Notifications
from dispatcher.repositories import operator_state as repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.contracts.internal import (
    OperatorState,
    OperatorStateReadRequest,
    OperatorStateWriteRequest,
    OperatorStateWriteResponse,
)
from trace_core.contracts.tasks import TaskStatus
from trace_core.db.pool import Pool
from trace_core.logging import get_logger

log = get_logger(__name__)


class OperatorStateApi:
    def __init__(self, pool: Pool, notifications: Notifications) -> None:
        self.pool = pool
        self.notifications = notifications

    async def read(self, call: OperatorStateReadRequest) -> OperatorState:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
            row = await repo.read_state(conn, gate["org_id"], gate["job_id"])
        return OperatorState() if row is None else OperatorState(state=row["state"], revision=row["revision"])

    async def write(self, call: OperatorStateWriteRequest) -> OperatorStateWriteResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
            if TaskStatus(gate["task_status"]).is_terminal:
                raise ClientException(
                    detail=f"task {call.task_id} is {gate['task_status']}; it cannot save operator state any more",
                    status_code=HTTP_409_CONFLICT,
                )
            check_outputs(call.events, gate["output_count"], "events")
            revision = await repo.swap_state(
                conn, gate["org_id"], gate["job_id"], call.expected_revision, call.state, call.task_id
            )
            if revision is None:
                stored = await repo.read_state(conn, gate["org_id"], gate["job_id"])
                current = 0 if stored is None else stored["revision"]
                raise ClientException(
                    detail=f"expected_revision: the operator state of job {gate['job_name']!r} is at revision "
                    f"{current}, not {call.expected_revision}; read it again and recompute",
                    status_code=HTTP_412_PRECONDITION_FAILED,
                    extra={"revision": current},
                )
            emitted = [(call.task_id, call.attempt_id, event) for event in call.events]
            counts = await tasks_repo.insert_events(conn, emitted)
        accepted, duplicates = counts.get(call.task_id, (0, 0))
        if accepted:
            self.notifications.publish("trace_events")
        log.debug("dispatcher.operator_state.saved", task_id=str(call.task_id), revision=revision, events=accepted)
        return OperatorStateWriteResponse(revision=revision, accepted_events=accepted, duplicate_events=duplicates)
