"""Ctrl-C (SIGINT) and SIGTERM: every command stops within a second or two and leaves nothing half-done.

SIGTERM is raised in the main thread as :class:`Terminated`, a ``KeyboardInterrupt``, so both signals
unwind the same way: work running on another thread (an ``UpdateTask``) is cancelled and waited for,
atomic writes remove their temporary files, Ray is shut down by the ``finally`` that started it, and the
command exits with 128 + the signal's number (130, 143) after one line on stderr.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

STOP_S = 1.5  # how long a cancelled update may take to reach its next check (a mini-batch, an image, a chunk)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is."""


def exit_status(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (from other threads: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def in_worker(fn: Callable[[], T], name: str = "mlupdate-work") -> T:
    """``fn()`` on a daemon thread while the main thread waits for it; its result, or its exception.

    Native code (torch's import, an ONNX export) calls back into Python; a ``KeyboardInterrupt`` raised
    there crosses C++ and aborts the process ("terminate called after throwing an instance of
    'pybind11::error_already_set'"). Signals are handled in the main thread only, so with the work on
    another thread the interrupt lands here, in Python, and :func:`settle` ends the process cleanly.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            result["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_task(task: Any) -> None:
    """Run an ``UpdateTask`` to its end; on Ctrl-C or SIGTERM cancel it, wait for its thread, re-raise.

    Waiting in short steps keeps the main thread responsive to signals; the worker thread is never left
    running inside torch when the process exits (which aborts it with "terminate called without an active
    exception").
    """
    task.resume()
    try:
        while not task.wait(0.1):
            pass
    except KeyboardInterrupt:
        task.cancel()
        task.wait(STOP_S)
        raise


def settle(exc: KeyboardInterrupt, command: str, before: Collection[threading.Thread] = ()) -> int:
    """Say how the command stopped (one line) and return its exit status.

    Only threads the command started count (not those in ``before``: a caller's own, in-process).

    mlupdate's worker threads get :data:`STOP_S` to reach their next cancellation check, other
    threads that would hold the process open (Flower's server thread, waiting for users that Ray no
    longer runs) one second; one still running then (inside one long native call, such as the frozen
    part's first export) ends the process at once, as finalising the interpreter under a thread inside
    torch aborts it. Its outputs are atomic: a file is complete or absent.
    """
    import os
    import sys
    import time

    code = exit_status(exc)
    now = time.monotonic()
    ours = now + STOP_S
    others = now + 1.0
    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and t not in before
            and (t.name.startswith("mlupdate-") or not t.daemon)]
    for t in busy:
        t.join(max(0.0, (ours if t.name.startswith("mlupdate-") else others) - time.monotonic()))
    how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    print(f"mlupdate {command}: stopped by {how}; unfinished work was cancelled and no partial output was left.",
          file=sys.stderr, flush=True)  # last: after what the stopping threads had to say
    if any(t.is_alive() for t in busy):
        sys.stdout.flush()
        os._exit(code)
    return code
