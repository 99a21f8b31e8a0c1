"""One Train of the web app and its events, pushed to every listener as they happen (no polling)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

FINAL = ("completed", "failed")


@dataclass
class TrainingJob:
    """One Train: its state and the events the page shows.

    Events, in order: ``preparing`` {examples}, ``training_begin`` {examples, epochs, batches, learning_rate},
    ``mini_batch_end`` {epoch, batch, batches, step, steps, loss} and ``epoch_end`` {epoch, epochs, loss}
    for each mini-batch and epoch, ``saving`` {}, then ``completed`` {loss, photos, duration_s} or
    ``failed`` {error}.
    """

    id: int
    examples: list[str]
    epochs: int | None = None
    batches: int = 1
    state: str = "running"  # running, completed, failed
    events: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    task: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set)

    def emit(self, event: str, **data: Any) -> None:
        """Record an event and wake every listener; a final event also ends the job (in one step)."""
        with self._lock:
            if event in FINAL:
                self.state, self.finished = event, time.time()
            self.events.append({"id": len(self.events), "event": event, "data": data})
            listeners = list(self._listeners)
        for loop, ev in listeners:
            loop.call_soon_threadsafe(ev.set)

    def events_since(self, index: int) -> tuple[list[dict[str, Any]], bool]:
        """Events from ``index`` on, and whether the job has finished."""
        with self._lock:
            return self.events[index:], self.state != "running"

    async def follow(self, start: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event from ``start`` on, each as soon as it is emitted, until the final one."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._listeners.add(entry)
        try:
            i = start
            while True:
                entry[1].clear()
                events, finished = self.events_since(i)
                for ev in events:
                    yield ev
                i += len(events)
                if finished and not events:
                    return
                if not events:
                    await entry[1].wait()
        finally:
            with self._lock:
                self._listeners.discard(entry)

    def status(self) -> dict[str, Any]:
        """The job as the API's ``TrainingStatus``."""
        end = self.finished or time.time()
        return {"job": self.id, "state": self.state, "examples": len(self.examples), "epochs": self.epochs,
                "epoch": len(self.losses), "loss": self.losses[-1] if self.losses else None,
                "losses": list(self.losses), "error": self.error, "started": self.started,
                "finished": self.finished, "duration_s": round(end - self.started, 3)}
