"""A spinner on stderr for slow steps of a command (compiling a model on its first load)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

FRAMES = "|/-\\"
DELAY_S = 0.5  # a compiled model loads faster than this: nothing is shown


@contextlib.contextmanager
def spinner(text: str, delay: float = DELAY_S) -> Iterator[None]:
    """Show ``text`` with a spinner and the seconds elapsed once the step has taken ``delay`` seconds.

    On a terminal the line redraws in place and is cleared at the end; otherwise (a log, a pipe)
    ``text`` is printed once, so logs get one line rather than a stream of frames.
    """
    done = threading.Event()
    tty = sys.stderr.isatty()
    start = time.perf_counter()

    def show() -> None:
        if done.wait(delay):
            return
        if not tty:
            print(f"{text} ...", file=sys.stderr, flush=True)
            return
        frame = 0
        while not done.wait(0.1):
            print(f"\r{FRAMES[frame % len(FRAMES)]} {text} {time.perf_counter() - start:.0f} s",
                  end="", file=sys.stderr, flush=True)
            frame += 1
        print("\r\033[K", end="", file=sys.stderr, flush=True)

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def loading(path: str) -> contextlib.AbstractContextManager[None]:
    """The spinner of a model load, which compiles the model the first time (then it is cached)."""
    return spinner(f"Loading {path} (compiling it once; later loads use the cache)")
