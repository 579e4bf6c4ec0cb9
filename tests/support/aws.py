"""AWS on loopback: moto's server for SQS, and a stand-in for Lambda's Invoke API.

moto runs Lambda functions only inside Docker, which these machines do not have; the stand-in speaks the
Invoke API (`POST /2015-03-31/functions/{name}/invocations`), records each call and runs Trace's Lambda
handler on the payload in a subprocess, as Lambda would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from moto.server import ThreadedMotoServer

from tests.support.stack import REPO, free_port

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "TRACE_AWS_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class LambdaStandIn:
    url: str
    env: dict[str, str]
    invocations: list[dict[str, Any]] = field(default_factory=list)
    runs: list[subprocess.Popen[bytes]] = field(default_factory=list)


HANDLER = "import json, sys; from worker.lambda_handler import handler; handler(json.load(sys.stdin), None)"


@contextmanager
def lambda_stand_in(function_env: dict[str, str]) -> Iterator[LambdaStandIn]:
    """`function_env` is the function's configured environment (dispatcher URL, service credential…)."""
    stand_in = LambdaStandIn(url="", env=function_env)

    class Invoke(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = self.path.split("/")
            body = self.rfile.read(int(self.headers["Content-Length"]))
            stand_in.invocations.append(
                {
                    "function": parts[3] if len(parts) > 3 else "",
                    "type": self.headers.get("X-Amz-Invocation-Type"),
                    "payload": json.loads(body),
                }
            )
            run = subprocess.Popen([sys.executable, "-c", HANDLER], stdin=subprocess.PIPE, env=function_env, cwd=REPO)
            assert run.stdin is not None
            run.stdin.write(body)
            run.stdin.close()
            stand_in.runs.append(run)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Invoke)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        for run in stand_in.runs:
            run.wait(timeout=30)
