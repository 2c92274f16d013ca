"""Ctrl-C that answers within a second or two, even inside a long numerical call (an SVD, a big GEMM, a FAISS build).

Python delivers SIGINT to the main thread only between bytecodes, so a verb inside one long C call (LAPACK,
BLAS, FAISS) would not see it until that call returns — minutes for an SVD of 2,000 × 65,536 activations. Each
verb therefore runs in a worker thread that the main thread joins with a short timeout loop. On Ctrl-C the main
thread (which is always between bytecodes) raises ``KeyboardInterrupt`` in the worker (so Python-level code
unwinds as usual: transactions roll back, the verb prints its line such as ``interrupted: 3 pairs saved``) and
waits ``GRACE_S`` for it. A worker still inside a C call after that is abandoned: the main thread prints the
verb's line and leaves with exit 130 (`os._exit`, as the worker cannot be stopped). What was committed stays
committed — the catalog's transactions and `zooscope._io`'s atomic writes are safe under an abrupt exit.

A verb can say what its line is when it is abandoned with `on_abandon` (``embed`` counts the pairs saved).
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["GRACE_S", "on_abandon", "run_interruptible"]

GRACE_S = 1.0  # how long the worker may take to unwind after Ctrl-C before it is abandoned
_POLL_S = 0.1
_BOX: dict[int, Callable[[], str]] = {}  # worker thread id -> its abandon line (set from inside the worker)


def on_abandon(message: Callable[[], str]) -> None:
    """Register, from inside a verb, the line to print if Ctrl-C has to abandon it inside a long C call."""
    _BOX[threading.get_ident()] = message


def _raise_in(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Schedule ``exc`` in ``thread`` (raised at its next bytecode)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))


def _abandon_line(ident: int | None) -> str:
    message = _BOX.get(ident) if ident is not None else None
    if message is None:
        return "interrupted"
    try:
        return str(message()) or "interrupted"
    except Exception:
        return "interrupted"


def run_interruptible(call: Callable[[], Any], *, say: Callable[[str], None], exit_code: int = 130) -> Any:
    """Run ``call()`` in a worker thread (same context variables); return its value or raise its exception.

    Ctrl-C in the main thread becomes ``KeyboardInterrupt`` in the worker; a worker that has not finished
    ``GRACE_S`` later is abandoned: ``say`` prints its line and the process exits with ``exit_code``.
    Called from a thread other than the main one (e.g. a test harness), ``call()`` simply runs there.
    """
    if threading.current_thread() is not threading.main_thread():
        return call()
    ctx = contextvars.copy_context()
    result: dict[str, Any] = {}
    finished = threading.Event()  # not Thread.is_alive: a join interrupted by Ctrl-C can mark a live thread stopped

    def target() -> None:
        try:
            result["value"] = ctx.run(call)
        except BaseException as e:  # handed to the main thread, re-raised there
            result["error"] = e
        finally:
            _BOX.pop(threading.get_ident(), None)
            finished.set()

    worker = threading.Thread(target=target, name="zooscope-verb", daemon=True)
    worker.start()
    try:
        while not finished.wait(_POLL_S):
            pass
    except KeyboardInterrupt:
        line = _abandon_line(worker.ident)  # read now: the worker drops it when it ends
        _raise_in(worker, KeyboardInterrupt)
        deadline = time.monotonic() + GRACE_S
        try:
            while not finished.wait(_POLL_S / 2) and time.monotonic() < deadline:
                pass
        except KeyboardInterrupt:  # a second Ctrl-C: leave now
            pass
        if not finished.is_set():
            say(line)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(exit_code)
        if "error" not in result:  # it finished anyway: the interrupt came too late to matter
            result["error"] = KeyboardInterrupt()
    if "error" in result:
        raise result.pop("error")
    return result.get("value")
