"""`python -m devchain --host 127.0.0.1 --port 8545 --seed N [--block-time-ms T] [--initial-blocks N]`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

import uvloop

from devchain.app import MAX_BODY_BYTES, Devchain
from devchain.server import serve

DEFAULT_CHAIN_ID = 31337


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="devchain", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8545, help="port for JSON-RPC and /control (default 8545)")
    parser.add_argument("--seed", type=int, default=0, help="the chain is a function of this seed and the operations")
    parser.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID, help="eth_chainId (default 31337)")
    parser.add_argument("--initial-blocks", type=int, default=0, help="blocks to mine on top of genesis at start")
    parser.add_argument("--block-time-ms", type=int, default=None, help="mine one block every T ms (default: off)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.initial_blocks < 0:
        parser.error("--initial-blocks must be >= 0")
    if args.block_time_ms is not None and args.block_time_ms < 1:
        parser.error("--block-time-ms must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    devchain = Devchain(seed=args.seed, chain_id=args.chain_id, block_time_ms=args.block_time_ms)
    started = time.monotonic()
    if args.initial_blocks:
        devchain.chain.mine(args.initial_blocks)
    print(
        f"devchain: chain id {args.chain_id}, seed {args.seed}, head {devchain.chain.head.number} "
        f"(generated in {time.monotonic() - started:.1f}s), listening on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    uvloop.run(_serve(devchain, args.host, args.port))


async def _serve(devchain: Devchain, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    devchain.start_mining()
    try:
        await serve(devchain.handle, host, port, stop, max_body_bytes=MAX_BODY_BYTES)
    finally:
        await devchain.stop_mining()


if __name__ == "__main__":
    main()
