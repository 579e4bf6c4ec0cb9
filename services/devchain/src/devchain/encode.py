"""JSON-RPC encodings of blocks, transactions, receipts and logs, as a geth node answers them.

Built as text directly (hex quantities, 0x data) rather than through dicts and `json.dumps`: cryo asks for every
block and every receipt, so the encoder is the server's hot path. What a block's encodings share is formatted once
per encoding (the block's hash and number in every transaction, receipt and log; a transaction's hash and index in
each of its logs). Encodings are cached per block hash, which a reorg changes, so a cached answer is never stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from devchain.chain import GAS_LIMIT, Block, Log, Transaction

SHA3_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
CACHED_BLOCKS = 4096


def data(value: bytes) -> str:
    return "0x" + value.hex()


def bloom(value: int) -> str:
    return "0x" + value.to_bytes(256, "big").hex()


def _in_block(block: Block) -> str:
    """`"blockHash":…,"blockNumber":…,` as transactions and receipts open with them."""
    return f'"blockHash":"0x{block.hash.hex()}","blockNumber":"{hex(block.number)}",'


def _log_context(block: Block, tx: Transaction) -> str:
    """The fields a log of `tx` has between `data` and `logIndex` (the same for every log of the transaction)."""
    return (
        f'"blockNumber":"{hex(block.number)}","transactionHash":"0x{tx.hash.hex()}",'
        f'"transactionIndex":"{hex(tx.index)}","blockHash":"0x{block.hash.hex()}",'
    )


def _log(log: Log, context: str) -> str:
    topics = ",".join([f'"0x{topic.hex()}"' for topic in log.topics])
    return (
        f'{{"address":"0x{log.address.hex()}","topics":[{topics}],"data":"0x{log.data.hex()}",{context}'
        f'"logIndex":"{hex(log.index)}","removed":false}}'
    )


def log_json(block: Block, tx: Transaction, log: Log) -> str:
    return _log(log, _log_context(block, tx))


def _transaction(in_block: str, tx: Transaction, chain_id: str) -> str:
    return (
        f'{{{in_block}"from":"0x{tx.sender.hex()}","gas":"{hex(tx.gas)}","gasPrice":"{hex(tx.effective_gas_price)}",'
        f'"maxFeePerGas":"{hex(tx.max_fee_per_gas)}","maxPriorityFeePerGas":"{hex(tx.max_priority_fee_per_gas)}",'
        f'"hash":"0x{tx.hash.hex()}","input":"0x{tx.input.hex()}","nonce":"{hex(tx.nonce)}",'
        f'"to":"0x{tx.to.hex()}","transactionIndex":"{hex(tx.index)}","value":"{hex(tx.value)}","type":"0x2",'
        f'"accessList":[],"chainId":"{chain_id}","v":"{hex(tx.y_parity)}","r":"{hex(tx.r)}",'
        f'"s":"{hex(tx.s)}","yParity":"{hex(tx.y_parity)}"}}'
    )


def transaction_json(block: Block, tx: Transaction, chain_id: int) -> str:
    return _transaction(_in_block(block), tx, hex(chain_id))


def _receipt(in_block: str, block: Block, tx: Transaction) -> str:
    context = _log_context(block, tx)
    logs = ",".join([_log(log, context) for log in tx.logs])
    return (
        f'{{{in_block}"contractAddress":null,'
        f'"cumulativeGasUsed":"{hex(tx.cumulative_gas_used)}","effectiveGasPrice":"{hex(tx.effective_gas_price)}",'
        f'"from":"0x{tx.sender.hex()}","gasUsed":"{hex(tx.gas_used)}","logs":[{logs}],'
        f'"logsBloom":"{bloom(tx.logs_bloom)}","status":"0x1","to":"0x{tx.to.hex()}",'
        f'"transactionHash":"0x{tx.hash.hex()}","transactionIndex":"{hex(tx.index)}","type":"0x2"}}'
    )


def receipt_json(block: Block, tx: Transaction) -> str:
    return _receipt(_in_block(block), block, tx)


def _header_json(block: Block) -> str:
    """The block's fields before `transactions` (without the closing brace)."""
    return (
        f'{{"baseFeePerGas":"{hex(block.base_fee_per_gas)}","difficulty":"0x0",'
        f'"extraData":"0x{block.extra_data.hex()}","gasLimit":"{hex(GAS_LIMIT)}","gasUsed":"{hex(block.gas_used)}",'
        f'"hash":"0x{block.hash.hex()}","logsBloom":"{bloom(block.logs_bloom)}","miner":"0x{block.miner.hex()}",'
        f'"mixHash":"0x{block.mix_hash.hex()}","nonce":"0x0000000000000000","number":"{hex(block.number)}",'
        f'"parentHash":"0x{block.parent_hash.hex()}","receiptsRoot":"0x{block.receipts_root.hex()}",'
        f'"sha3Uncles":"{SHA3_UNCLES}","size":"{hex(block.size)}","stateRoot":"0x{block.state_root.hex()}",'
        f'"timestamp":"{hex(block.timestamp)}","totalDifficulty":"0x0",'
        f'"transactionsRoot":"0x{block.transactions_root.hex()}","uncles":[],'
    )


class _Cache:
    """Least-recently-used encodings keyed by block hash."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[bytes, str], bytes | tuple[bytes, ...]] = OrderedDict()

    def get(self, block: Block, kind: str, build: Callable[[], bytes | tuple[bytes, ...]]) -> bytes | tuple[bytes, ...]:
        key = (block.hash, kind)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = build()
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry


class Encoder:
    def __init__(self, chain_id: int, cached_blocks: int = CACHED_BLOCKS) -> None:
        self.chain_id = chain_id
        self._chain_id_hex = hex(chain_id)
        self._cache = _Cache(3 * cached_blocks)

    def block(self, block: Block, full_transactions: bool) -> bytes:
        if full_transactions:
            return self._cached(block, "full", lambda: self._block(block, True))
        return self._cached(block, "hashes", lambda: self._block(block, False))

    def receipts(self, block: Block) -> tuple[bytes, ...]:
        def build() -> tuple[bytes, ...]:
            in_block = _in_block(block)
            return tuple([_receipt(in_block, block, tx).encode() for tx in block.transactions])

        entry = self._cache.get(block, "receipts", build)
        assert isinstance(entry, tuple)
        return entry

    def _cached(self, block: Block, kind: str, build: Callable[[], bytes]) -> bytes:
        entry = self._cache.get(block, kind, build)
        assert isinstance(entry, bytes)
        return entry

    def _block(self, block: Block, full_transactions: bool) -> bytes:
        if full_transactions:
            in_block, chain_id = _in_block(block), self._chain_id_hex
            transactions = ",".join([_transaction(in_block, tx, chain_id) for tx in block.transactions])
        else:
            transactions = ",".join([f'"0x{tx.hash.hex()}"' for tx in block.transactions])
        return (_header_json(block) + f'"transactions":[{transactions}]}}').encode()
