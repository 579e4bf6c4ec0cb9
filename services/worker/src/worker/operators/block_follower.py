"""`block_follower` (source): follows a chain's head and emits one event per block (SPEC §10).

Config (`trace_core.dag.operators.BlockFollowerConfig`): `rpc_url` (else the slot's `RPC_URL`),
`confirmations`, `start_block`, optional `end_block` (the run completes after it: a backfill),
`poll_interval_s`, `batch_blocks`, `reorg_window`, `rpc_timeout_s`, `rpc_retries`.

A block `n` is emitted once `head - n >= confirmations`, with the scope `{cursor: "<epoch>:<hash>", range: {n,
n}}` and the payload `{number, hash, parent_hash, timestamp}`. The operator state (`operator_state`) holds the
next block, the epoch and the last `reorg_window` blocks emitted (number and hash); each save stores the events
of the blocks it accounts for in the same transaction, so a restarted attempt resumes from the state with no
gap and no block emitted twice.

Reorgs are found by parent hash: block `next` must link to the last block emitted, and when caught up the last
block emitted must still be on the chain. Either check failing, the fork point is the newest kept block whose
hash the chain still has; blocks after it are invalidated (one `kind: invalidation` event, scope `{cursor:
"reorg:<epoch>", range: {fork+1, last}}`), the epoch goes up, and the new branch is emitted from `fork+1`. The
epoch in the cursor keeps the new branch's events apart from the old ones (the run is one task, and events
dedupe on producer task and scope), even when a later reorg returns to a branch seen before. A reorg deeper
than `confirmations` is found the same way; one deeper than the kept window fails the task (not retried).

When the job has stored outputs, each block's header is also written to them as one row, scope as above
(stored under its range, so the new branch's row replaces the old one).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from trace_core.contracts.events import EmittedEvent, EventKind, EventScope
from trace_core.contracts.tasks import OutputStorage
from trace_core.dag.operators import BlockFollowerConfig
from worker.operators import EventLike, OperatorContext, OperatorError, StateConflictError, operator_config
from worker.operators.jsonrpc import BlockHeader, JsonRpc, RpcError

MAX_UNLINKED_READS = 10


@dataclass
class FollowerState:
    next_block: int
    epoch: int = 0
    recent: list[tuple[int, str]] = field(default_factory=list)  # emitted blocks (number, hash), oldest first

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None, start_block: int) -> FollowerState:
        if stored is None:
            return cls(next_block=start_block)
        return cls(stored["next_block"], stored["epoch"], [(n, h) for n, h in stored["recent"]])

    def to_json(self) -> dict[str, Any]:
        return {"next_block": self.next_block, "epoch": self.epoch, "recent": [[n, h] for n, h in self.recent]}


def block_scope(block: BlockHeader, epoch: int) -> EventScope:
    return EventScope(cursor=f"{epoch}:{block.hash}", range={"start": block.number, "end": block.number})


class Follower:
    def __init__(self, ctx: OperatorContext, config: BlockFollowerConfig, rpc: JsonRpc) -> None:
        self.ctx = ctx
        self.config = config
        self.rpc = rpc
        self.stored_outputs = [o.index for o in ctx.task.outputs if o.storage is not OutputStorage.NONE]
        self.event_outputs = [o.index for o in ctx.task.outputs if o.storage is OutputStorage.NONE]
        self.revision = 0
        self.state = FollowerState(config.start_block)
        self.safe = -1  # the newest block confirmed at the last head read

    def load(self) -> None:
        stored = self.ctx.load_state()
        self.revision = stored.revision
        self.state = FollowerState.from_json(stored.state, self.config.start_block)

    def save(self, state: FollowerState, events: list[EmittedEvent]) -> None:
        try:
            self.revision = self.ctx.save_state(state.to_json(), revision=self.revision, events=events)
        except StateConflictError:
            self.load()  # nothing was stored: carry on from what is
            return
        self.state = state

    def follow(self) -> None:
        self.load()
        unlinked = 0
        # The next batch is read while this one is saved (in a backfill the save is the slower half of a round):
        # blocks confirmed at the last head read, used only if they start where the saved state goes on.
        ahead: tuple[int, Future[list[BlockHeader | None]]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="block-follower-read") as reader:
            while self.config.end_block is None or self.state.next_block <= self.config.end_block:
                if ahead is not None and ahead[0] == self.state.next_block:
                    blocks: list[BlockHeader | None] | None = ahead[1].result()
                else:
                    if ahead is not None:
                        wait([ahead[1]])  # the saved state went elsewhere (a swap lost to another writer): not these
                    blocks = self.read_confirmed()
                ahead = None
                if blocks is None:
                    continue
                if any(block is None for block in blocks):
                    time.sleep(self.config.poll_interval_s)  # the head moved back between calls: read it again
                    continue
                headers = [block for block in blocks if block is not None]
                if self.state.recent and headers[0].parent_hash != self.state.recent[-1][1]:
                    self.handle_reorg()
                    continue
                if any(b.parent_hash != a.hash for a, b in itertools.pairwise(headers)):
                    # the chain changed while the batch was read: read it again, but not forever
                    unlinked += 1
                    if unlinked > MAX_UNLINKED_READS:
                        raise RpcError(
                            f"{self.rpc.node}: blocks {headers[0].number}..{headers[-1].number} do not link by "
                            f"parent hash in {unlinked} reads in a row"
                        )
                    time.sleep(self.config.poll_interval_s)
                    continue
                unlinked = 0
                following = self.batch_from(headers[-1].number + 1)
                if following:
                    ahead = following[0], reader.submit(self.rpc.blocks, following)
                self.emit(headers)

    def read_confirmed(self) -> list[BlockHeader | None] | None:
        """The next batch of confirmed blocks; None when there is none yet (after a pause, or a reorg handled)."""
        self.safe = self.rpc.block_number() - self.config.confirmations
        if self.state.next_block > self.safe:
            if self.state.recent and not self.last_is_canonical():
                self.handle_reorg()
            else:
                time.sleep(self.config.poll_interval_s)
            return None
        return self.rpc.blocks(self.batch_from(self.state.next_block))

    def batch_from(self, first: int) -> list[int]:
        """The numbers of one batch from `first`: up to `batch_blocks`, none past the last confirmed block (at the
        last head read) or `end_block`."""
        last = min(self.safe, first + self.config.batch_blocks - 1)
        if self.config.end_block is not None:
            last = min(last, self.config.end_block)
        return list(range(first, last + 1))

    def last_is_canonical(self) -> bool:
        number, stored_hash = self.state.recent[-1]
        [block] = self.rpc.blocks([number])
        return block is not None and block.hash == stored_hash

    def handle_reorg(self) -> None:
        """Find the fork point among the kept blocks, invalidate what came after it, go back to it."""
        recent = self.state.recent
        chain = self.rpc.blocks([number for number, _ in recent])
        pairs = enumerate(zip(recent, chain, strict=True))
        kept = [i for i, ((_, stored), block) in pairs if block is not None and block.hash == stored]
        if kept:
            fork_index = kept[-1]
            fork = recent[fork_index][0]
        elif recent[0][0] == self.config.start_block:
            fork_index, fork = -1, self.config.start_block - 1  # every block since the start was replaced
        else:
            raise OperatorError(
                f"block_follower: a reorg replaced every kept block ({recent[0][0]}..{recent[-1][0]}): its fork "
                f"point is deeper than config.reorg_window ({self.config.reorg_window} blocks)",
                retryable=False,
            )
        last = recent[-1][0]
        if fork == last:
            return  # the chain is back where it was
        epoch = self.state.epoch + 1
        scope = EventScope(cursor=f"reorg:{epoch}", range={"start": fork + 1, "end": last})
        payload = {"fork_block": fork, "depth": last - fork, "replaced_head": recent[-1][1]}
        invalidations = [
            EmittedEvent(output=o.index, kind=EventKind.INVALIDATION, scope=scope, payload=payload)
            for o in self.ctx.task.outputs
        ]
        self.save(FollowerState(fork + 1, epoch, recent[: fork_index + 1]), invalidations)

    def emit(self, headers: list[BlockHeader]) -> None:
        epoch = self.state.epoch
        for block in headers:
            for output in self.stored_outputs:
                self.ctx.write([block.as_dict()], output=output, scope=block_scope(block, epoch))
        events = [
            EmittedEvent(output=output, scope=block_scope(block, epoch), payload=block.as_dict())
            for block in headers
            for output in self.event_outputs
        ]
        recent = (self.state.recent + [(b.number, b.hash) for b in headers])[-self.config.reorg_window :]
        self.save(FollowerState(headers[-1].number + 1, epoch, recent), events)


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    config = operator_config(ctx, BlockFollowerConfig)
    url = config.rpc_url or os.environ.get("RPC_URL")
    if not url:
        raise OperatorError(
            "block_follower: config.rpc_url is not set and the worker-pool slot sets no RPC_URL", retryable=False
        )
    rpc = JsonRpc(url, config.rpc_timeout_s, config.rpc_retries)
    try:
        Follower(ctx, config, rpc).follow()
    finally:
        rpc.close()
    return None
