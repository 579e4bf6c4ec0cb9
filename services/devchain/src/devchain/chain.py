"""A deterministic synthetic EVM chain: a pure function of the seed and the sequence of mine / reorg operations.

Block `n` is generated from `(seed, n, branch)`, where `branch` counts the reorgs made before it was mined, and
from its parent's hash. Two chains given the same seed and the same operations are identical; a reorg mines
its replacement blocks on a new branch, so they differ from what they replace in hashes, transactions and logs.

Hashes are BLAKE2b-256 of each object's fields (not Keccak of RLP: nothing here verifies Ethereum's encoding),
chained the way a node chains them: a transaction's hash covers its fields, the block's roots cover its
transactions and receipts, and the block hash covers the header, parent hash included.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

BLOCK_TIME_S = 12
GENESIS_TIMESTAMP = 1_700_000_000
GAS_LIMIT = 30_000_000
MAX_TXS_PER_BLOCK = 8  # a block has 1..MAX transactions, so every block (and every replacement) has some
MAX_LOGS_PER_TX = 3
# a small world of contracts and event signatures, so that eth_getLogs filters by address and topic match things
CONTRACTS = 8
EVENT_SIGNATURES = 4
ZERO_HASH = bytes(32)


def _hash(*parts: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        digest.update(part)
    return digest.digest()


def contract_address(index: int) -> bytes:
    """Address of synthetic contract `index` (0..CONTRACTS-1); logs are emitted only by these."""
    return _hash(b"devchain.contract", index.to_bytes(4, "big"))[:20]


def event_topic(index: int) -> bytes:
    """topic0 of synthetic event signature `index` (0..EVENT_SIGNATURES-1)."""
    return _hash(b"devchain.event", index.to_bytes(4, "big"))


_CONTRACTS = tuple(contract_address(i) for i in range(CONTRACTS))
_TOPICS = tuple(event_topic(i) for i in range(EVENT_SIGNATURES))


class _Stream:
    """Deterministic bytes for one block: BLAKE2b of (key, counter), read in order."""

    __slots__ = ("_buffer", "_counter", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._counter = 0
        self._buffer = b""

    def take(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += hashlib.blake2b(self._key + self._counter.to_bytes(4, "big"), digest_size=64).digest()
            self._counter += 1
        head, self._buffer = self._buffer[:size], self._buffer[size:]
        return head

    def below(self, bound: int) -> int:
        """An integer in [0, bound) (bound < 2**32; the bias is irrelevant for synthetic data)."""
        return int.from_bytes(self.take(4), "big") % bound


@dataclass(frozen=True, slots=True)
class Log:
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes
    index: int  # position in the block


@dataclass(frozen=True, slots=True)
class Transaction:
    hash: bytes
    index: int
    nonce: int
    sender: bytes
    to: bytes
    value: int
    gas: int
    gas_used: int
    cumulative_gas_used: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    effective_gas_price: int
    input: bytes
    r: int
    s: int
    y_parity: int
    logs: tuple[Log, ...]
    logs_bloom: int


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    branch: int
    miner: bytes
    mix_hash: bytes
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    logs_bloom: int
    gas_used: int
    base_fee_per_gas: int
    extra_data: bytes
    size: int
    transactions: tuple[Transaction, ...]


def _bloom(items: list[bytes]) -> int:
    """A 2048-bit bloom of `items` (addresses and topics), three bits each, as Ethereum's logsBloom."""
    bloom = 0
    for item in items:
        digest = _hash(item)
        for i in (0, 2, 4):
            bloom |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return bloom


def _transaction(
    stream: _Stream, number: int, index: int, base_fee: int, cumulative: int, first_log: int
) -> Transaction:
    sender = stream.take(20)
    calls_contract = stream.below(4) != 0
    to = _CONTRACTS[stream.below(CONTRACTS)] if calls_contract else stream.take(20)
    value = int.from_bytes(stream.take(9), "big") if stream.below(3) == 0 else int.from_bytes(stream.take(4), "big")
    payload = stream.take(4 + 32 * stream.below(3)) if calls_contract else b""
    gas = 21_000 + (len(payload) * 16 + stream.below(180_000) if calls_contract else 0)
    gas_used = 21_000 + (gas - 21_000) * (50 + stream.below(50)) // 100
    priority = 1_000_000 * (1 + stream.below(2_000))  # 0.001..2 gwei
    max_fee = 2 * base_fee + priority
    logs: list[Log] = []
    if calls_contract:
        for _ in range(stream.below(MAX_LOGS_PER_TX + 1)):
            topics = (_TOPICS[stream.below(EVENT_SIGNATURES)], bytes(12) + sender, bytes(12) + stream.take(20))
            logs.append(Log(address=to, topics=topics, data=stream.take(32), index=first_log + len(logs)))
    nonce = stream.below(1 << 20)
    signature = stream.take(64)
    fields = struct.pack(">QIQQQQQ", number, index, nonce, gas, max_fee, priority, value & ((1 << 64) - 1))
    tx_hash = _hash(b"tx", fields, sender, to, value.to_bytes(16, "big"), payload, signature)
    return Transaction(
        hash=tx_hash,
        index=index,
        nonce=nonce,
        sender=sender,
        to=to,
        value=value,
        gas=gas,
        gas_used=gas_used,
        cumulative_gas_used=cumulative + gas_used,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=priority,
        effective_gas_price=base_fee + priority,
        input=payload,
        r=int.from_bytes(signature[:32], "big"),
        s=int.from_bytes(signature[32:], "big") >> 1,  # low-s, as signatures are normalized
        y_parity=signature[0] & 1,
        logs=tuple(logs),
        logs_bloom=_bloom([item for log in logs for item in (log.address, *log.topics)]),
    )


def make_block(seed: int, number: int, branch: int, parent: Block | None) -> Block:
    """Block `number` of branch `branch` on top of `parent` (None for genesis)."""
    stream = _Stream(_hash(b"devchain.block", struct.pack(">QQQ", seed, number, branch)))
    base_fee = 1_000_000_000 + stream.below(9_000_000_000)  # 1..10 gwei
    transactions: list[Transaction] = []
    cumulative = 0
    logs = 0
    count = 0 if parent is None else 1 + stream.below(MAX_TXS_PER_BLOCK)
    for index in range(count):
        tx = _transaction(stream, number, index, base_fee, cumulative, logs)
        transactions.append(tx)
        cumulative = tx.cumulative_gas_used
        logs += len(tx.logs)
    parent_hash = ZERO_HASH if parent is None else parent.hash
    transactions_root = _hash(b"txs", *(tx.hash for tx in transactions))
    receipts_root = _hash(
        b"receipts", *(tx.hash + struct.pack(">QQ", tx.gas_used, len(tx.logs)) for tx in transactions)
    )
    state_root = _hash(b"state", ZERO_HASH if parent is None else parent.state_root, transactions_root)
    miner = _CONTRACTS[0] if parent is None else stream.take(20)
    mix_hash = stream.take(32)
    extra_data = b"devchain/" + str(branch).encode()
    timestamp = GENESIS_TIMESTAMP + BLOCK_TIME_S * number
    bloom = 0
    for tx in transactions:
        bloom |= tx.logs_bloom
    header = struct.pack(">QQQQQ", number, timestamp, cumulative, GAS_LIMIT, base_fee)
    block_hash = _hash(
        b"block", parent_hash, header, miner, mix_hash, state_root, transactions_root, receipts_root, extra_data
    )
    return Block(
        number=number,
        hash=block_hash,
        parent_hash=parent_hash,
        timestamp=timestamp,
        branch=branch,
        miner=miner,
        mix_hash=mix_hash,
        state_root=state_root,
        transactions_root=transactions_root,
        receipts_root=receipts_root,
        logs_bloom=bloom,
        gas_used=cumulative,
        base_fee_per_gas=base_fee,
        extra_data=extra_data,
        size=540 + sum(120 + len(tx.input) for tx in transactions),
        transactions=tuple(transactions),
    )


class ChainError(ValueError):
    """A control operation the chain cannot do; the message names the field."""


class Chain:
    """The canonical chain, genesis (block 0) first, with lookups by block and transaction hash."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ChainError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.reorgs = 0
        self.blocks: list[Block] = []
        self._block_numbers: dict[bytes, int] = {}
        self._transactions: dict[bytes, tuple[int, int]] = {}
        self._append(make_block(seed, 0, 0, None))

    @property
    def head(self) -> Block:
        return self.blocks[-1]

    def block(self, number: int) -> Block | None:
        return self.blocks[number] if 0 <= number < len(self.blocks) else None

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        number = self._block_numbers.get(block_hash)
        return None if number is None else self.blocks[number]

    def transaction(self, tx_hash: bytes) -> tuple[Block, Transaction] | None:
        place = self._transactions.get(tx_hash)
        if place is None:
            return None
        block = self.blocks[place[0]]
        return block, block.transactions[place[1]]

    def mine(self, count: int) -> Block:
        """Append `count` blocks to the current branch; returns the new head."""
        if count < 1:
            raise ChainError(f"blocks must be >= 1, got {count}")
        for _ in range(count):
            self._append(make_block(self.seed, len(self.blocks), self.reorgs, self.head))
        return self.head

    def reorg(self, depth: int) -> Block:
        """Replace the last `depth` blocks with `depth + 1` blocks of a new branch; returns the new head."""
        height = self.head.number
        if depth < 1 or depth > height:
            raise ChainError(f"depth must be between 1 and the head's number ({height}), got {depth}")
        for block in self.blocks[height - depth + 1 :]:
            del self._block_numbers[block.hash]
            for tx in block.transactions:
                del self._transactions[tx.hash]
        del self.blocks[height - depth + 1 :]
        self.reorgs += 1
        return self.mine(depth + 1)

    def _append(self, block: Block) -> None:
        self.blocks.append(block)
        self._block_numbers[block.hash] = block.number
        for tx in block.transactions:
            self._transactions[tx.hash] = (block.number, tx.index)
