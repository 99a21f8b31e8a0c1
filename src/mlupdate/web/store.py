"""The pending training examples of the web app, kept on disk so that a restart keeps them.

Layout inside the app's data directory::

    examples/index.json        [{"id", "label", "file", "name", "added"}, ...]
    examples/<id>.<jpg|png|...> the uploaded image bytes, as uploaded (already checked to decode)

Every write of the index is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class Example:
    """One labelled photo waiting for the next Train."""

    id: str
    label: str
    file: str
    name: str
    added: float


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync and rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ExampleStore:
    """Labelled photos on disk with a JSON index; safe to use from several threads.

    Args:
        folder: The ``examples`` folder (created if missing).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index = folder / "index.json"
        self._lock = threading.Lock()
        self._items = self._read()

    def _read(self) -> list[Example]:
        try:
            raw = json.loads(self._index.read_text(encoding="utf-8"))
            items = [Example(**{k: e[k] for k in ("id", "label", "file", "name", "added")}) for e in raw]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError):
            # A damaged index (edited by hand?): start afresh rather than refuse to start the app.
            return []
        return [e for e in items if (self.folder / e.file).is_file()]

    def _save(self, items: list[Example]) -> None:
        """Write the index, then adopt ``items`` (so a failed write changes nothing)."""
        write_text_atomic(self._index, json.dumps([asdict(e) for e in items], indent=1))
        self._items = items

    def list(self) -> list[Example]:
        """The pending examples, oldest first."""
        with self._lock:
            return list(self._items)

    def get(self, example_id: str) -> Example | None:
        """The example with this id, or None."""
        with self._lock:
            return next((e for e in self._items if e.id == example_id), None)

    def path(self, example: Example) -> Path:
        """Where the example's image bytes are stored."""
        return self.folder / example.file

    def add(self, data: bytes, label: str, name: str, image_format: str | None) -> Example:
        """Store the bytes of an image (already checked to decode) with its label."""
        ex_id = uuid.uuid4().hex[:12]
        ext = EXTENSIONS.get((image_format or "").upper(), ".img")
        example = Example(ex_id, label, ex_id + ext, Path(name or "photo").name[:120], time.time())
        dest = self.folder / example.file
        tmp = self.folder / f".{example.file}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            with self._lock:
                self._save([*self._items, example])
        except BaseException:
            tmp.unlink(missing_ok=True)
            dest.unlink(missing_ok=True)
            raise
        return example

    def remove(self, ids: list[str] | set[str]) -> int:
        """Remove examples by id (index first, then files); returns how many were removed."""
        ids = set(ids)
        with self._lock:
            gone = [e for e in self._items if e.id in ids]
            self._save([e for e in self._items if e.id not in ids])
        for e in gone:
            (self.folder / e.file).unlink(missing_ok=True)
        return len(gone)
