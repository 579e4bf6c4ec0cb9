"""Keep the service credential out of what an operator child could read about the wrapper.

`/proc/<wrapper pid>/environ` shows the environment block the wrapper was started with, whatever Python
does with `os.environ` later. The wrapper overwrites the credential's bytes in that block in place, drops
it from `os.environ`, and marks itself non-dumpable so processes of the same (non-root) user cannot read
its memory. Call it after the settings are read.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_DUMPABLE = 4
SECRET_VARIABLES = (b"TRACE_SERVICE_TOKEN",)


def scrub_process_secrets() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
        index = 0
        while (address := environ[index]) is not None:
            entry = ctypes.string_at(address)
            for name in SECRET_VARIABLES:
                if entry.startswith(name + b"="):
                    ctypes.memset(address + len(name) + 1, ord("x"), len(entry) - len(name) - 1)
            index += 1
    for name in SECRET_VARIABLES:
        os.environ.pop(name.decode(), None)
