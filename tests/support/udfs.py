"""User functions (`operator: python`) the suites deploy. Workers import them as `tests.support.udfs:NAME`.

Functions that take a second argument receive the job's `config`; they record what they observe into files
under `config["dir"]`, which the tests read back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def count_to(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A source: `count` events, cursor i, with `partitions` partition keys round robin when given."""
    partitions = config.get("partitions", 0)
    for n in range(config["count"]):
        scope: dict[str, Any] = {"cursor": str(n)}
        if partitions:
            scope["partition_key"] = f"p{n % partitions}"
        yield {"scope": scope, "payload": {"n": n}}


def record_interval(event: dict[str, Any], config: dict[str, Any]) -> None:
    """Sleep `sleep_s`, and write when it ran (and in which slot env) to `dir`."""
    start = time.time()
    time.sleep(config.get("sleep_s", 0.2))
    record = {
        "n": event["payload"]["n"],
        "partition": event["scope"].get("partition_key"),
        "start": start,
        "end": time.time(),
        "slot": os.environ.get("SLOT"),
    }
    Path(config["dir"], f"{event['payload']['n']}.json").write_text(json.dumps(record))
    if event["payload"]["n"] in config.get("fail", []):
        raise RuntimeError(f"failing on purpose for n={event['payload']['n']}")


def emit_then_hang_first_time(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A source that emits three events, then hangs on its first attempt (to be killed) and ends on the next."""
    for n in range(3):
        yield {"scope": {"cursor": str(n)}, "payload": {"n": n}}
    marker = Path(config["dir"], "attempted")
    if not marker.exists():
        marker.write_text("1")
        Path(config["dir"], "hanging").write_text("1")
        time.sleep(600)


def sleep_long(event: dict[str, Any] | None, config: dict[str, Any]) -> None:
    Path(config["dir"], "started").write_text(str(time.time()))
    time.sleep(config.get("sleep_s", 600))


def snoop(event: dict[str, Any] | None, config: dict[str, Any]) -> None:
    """Look for the secrets in every place an operator can reach, and write down where each was found."""
    needles = {name: value.encode() for name, value in config["needles"].items()}
    places: dict[str, bytes] = {
        "environ": json.dumps(dict(os.environ)).encode(),
        "argv": json.dumps(sys.argv).encode(),
        "event": json.dumps(event).encode(),
    }
    for path in (
        "/proc/self/environ",
        "/proc/self/cmdline",
        f"/proc/{os.getppid()}/environ",
        f"/proc/{os.getppid()}/cmdline",
    ):
        try:
            places[path] = Path(path).read_bytes()
        except OSError as error:
            places[path] = str(error).encode()
    for root in (Path.cwd(), Path.home(), Path(config["scan"])):
        for file in root.rglob("*"):
            if file.is_file() and file.stat().st_size < 1_000_000:
                try:
                    places[str(file)] = file.read_bytes()
                except OSError:
                    continue
    found = {
        name: sorted(place for place, data in places.items() if needle in data) for name, needle in needles.items()
    }
    Path(config["dir"], "found.json").write_text(json.dumps({"found": found, "looked_in": sorted(places)}))


def append_run(event: dict[str, Any], config: dict[str, Any]) -> None:
    """Sleep `sleep_s`, then append the event's n to `dir`/runs.log (one line per run to completion)."""
    time.sleep(config.get("sleep_s", 0.1))
    with Path(config["dir"], "runs.log").open("a") as log:
        log.write(f"{event['payload']['n']}\n")


def block_ranges(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A source of range manifests, as range_aggregator emits them: blocks `first..last` in ranges of `size`.
    With `again: [start, end]` and `dir`, it emits that range once more (cursor "again") after the test writes
    `dir`/go, which is how a test asks for a range to be extracted a second time."""
    for start in range(config["first"], config["last"] + 1, config["size"]):
        end = min(start + config["size"] - 1, config["last"])
        yield {"scope": {"partition_key": f"{start}_{end}", "range": {"start": start, "end": end}}}
    if "again" in config:
        start, end = config["again"]
        while not Path(config["dir"], "go").exists():
            time.sleep(0.05)
        yield {"scope": {"partition_key": f"{start}_{end}", "range": {"start": start, "end": end}, "cursor": "again"}}


def numbered_rows(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A source writing `{"n": n}` for scope cursor n: `count` of them, or with `stop` one every `interval_s`
    until that file exists, holding while the file `pause` exists. The first `burst` come without delay (a
    backfill from the start, then following the head)."""
    n = 0
    while n < config.get("count", 2**31):
        if "stop" in config and Path(config["stop"]).exists():
            return
        if "pause" in config and Path(config["pause"]).exists():
            time.sleep(0.05)
            continue
        yield {"rows": [{"n": n}], "scope": {"cursor": str(n)}}
        n += 1
        if n >= config.get("burst", 0):
            time.sleep(config.get("interval_s", 0))


def scaled_rows(event: dict[str, Any], config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`{"n", "value": n * factor}` for the input scope. Waits while the file `gate` is missing; while the file
    `hang` exists it writes `hanging-{n}` (its pid) to `dir` and sleeps."""
    n = int(event["scope"]["cursor"])
    while "gate" in config and not Path(config["gate"]).exists():
        time.sleep(0.05)
    if "hang" in config and Path(config["hang"]).exists():
        Path(config["dir"], f"hanging-{n}").write_text(str(os.getpid()))
        time.sleep(600)
    yield {"rows": [{"n": n, "value": n * config["factor"]}]}
