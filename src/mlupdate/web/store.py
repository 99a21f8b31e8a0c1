"""The web app's data directory: pending examples and the personalised model, changed atomically.

Layout inside the data directory::

    state.sqlite3              SQLite in WAL mode: the pending examples and which model file is current
    examples/<id>.<jpg|png|…>  the uploaded image bytes, as uploaded (already checked to decode)
    models/<version>.mlmodel   personalised models; a file is written once, never modified

Every change of state is one SQLite transaction. A Train writes a new model file first, then in one
transaction makes it current, records what it learned and removes the examples it used; only then are the
old model file and the used photos deleted. A crash at any point therefore leaves either the state before
the Train or the one after it. Files that no row names (a write cut short, a deletion not yet done) are
removed when the store opens; the files of the earlier layout (``examples/index.json``,
``personalized.mlmodel`` and ``.json``) are taken over first.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS examples (id TEXT PRIMARY KEY, label TEXT NOT NULL, file TEXT NOT NULL,
                                     name TEXT NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS model (one INTEGER PRIMARY KEY CHECK (one = 1), file TEXT NOT NULL, info TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Example:
    """One labelled photo waiting for the next Train."""

    id: str
    label: str
    file: str
    name: str
    added: float


def write_bytes_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` through a temporary name, fsync and rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Store:
    """The app's state in ``data_dir``; safe to use from several threads.

    Args:
        data_dir: The data directory (created if missing).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.examples_dir = data_dir / "examples"
        self.models_dir = data_dir / "models"
        self.examples_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "state.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._adopt_old_layout()
        self.clean()

    def _adopt_old_layout(self) -> None:
        """Take over the files of mlupdate 0.1's layout (``examples/index.json``, ``personalized.mlmodel``)."""
        index, model, info = (self.examples_dir / "index.json", self.data_dir / "personalized.mlmodel",
                              self.data_dir / "personalized.json")
        if index.is_file():
            try:
                rows = [(e["id"], e["label"], e["file"], e["name"], e["added"])
                        for e in json.loads(index.read_text(encoding="utf-8"))]
            except (ValueError, TypeError, KeyError):
                rows = []
            with self._lock:
                self._db.executemany("INSERT OR IGNORE INTO examples VALUES (?, ?, ?, ?, ?)",
                                     [r for r in rows if (self.examples_dir / str(r[2])).is_file()])
            index.unlink()
        if model.is_file() and self.model() is None:
            try:
                record = json.loads(info.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
            dest = self.new_model_path()
            os.replace(model, dest)
            with self._lock:
                self._db.execute("INSERT INTO model VALUES (1, ?, ?)", (dest.name, json.dumps(record)))
        info.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def clean(self) -> list[Path]:
        """Delete the files no row names (left by a crash); returns them."""
        with self._lock:
            keep = {r[0] for r in self._db.execute("SELECT file FROM examples")}
            model = {r[0] for r in self._db.execute("SELECT file FROM model")}
        gone = [p for p in self.examples_dir.iterdir() if p.name not in keep]
        gone += [p for p in self.models_dir.iterdir() if p.name not in model]
        for p in gone:
            remove_model_file(p)
        return gone

    # -- examples ----------------------------------------------------------------------------------
    def list(self) -> list[Example]:
        """The pending examples, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, label, file, name, added FROM examples ORDER BY rowid").fetchall()
        return [Example(*r) for r in rows]

    def get(self, example_id: str) -> Example | None:
        """The example with this id, or None."""
        with self._lock:
            row = self._db.execute("SELECT id, label, file, name, added FROM examples WHERE id = ?",
                                   (example_id,)).fetchone()
        return Example(*row) if row else None

    def path(self, example: Example) -> Path:
        """Where the example's image bytes are stored."""
        return self.examples_dir / example.file

    def add(self, data: bytes, label: str, name: str, image_format: str | None) -> Example:
        """Store the bytes of an image (already checked to decode) with its label.

        Raises:
            OSError: If the file cannot be written (nothing is recorded then).
        """
        ex_id = uuid.uuid4().hex[:12]
        ext = EXTENSIONS.get((image_format or "").upper(), ".img")
        example = Example(ex_id, label, ex_id + ext, Path(name or "photo").name[:120], time.time())
        write_bytes_synced(self.examples_dir / example.file, data)
        with self._lock:
            self._db.execute("INSERT INTO examples VALUES (?, ?, ?, ?, ?)",
                             (example.id, example.label, example.file, example.name, example.added))
        return example

    def remove(self, ids: list[str]) -> int:
        """Remove examples by id (rows first, then files); returns how many were removed."""
        with self._lock:
            gone = self._delete_examples(ids)
        for f in gone:
            (self.examples_dir / f).unlink(missing_ok=True)
        return len(gone)

    def _delete_examples(self, ids: list[str]) -> list[str]:
        marks = ",".join("?" * len(ids))
        files = [r[0] for r in self._db.execute(f"SELECT file FROM examples WHERE id IN ({marks})", ids)]
        self._db.execute(f"DELETE FROM examples WHERE id IN ({marks})", ids)
        return files

    # -- the personalised model --------------------------------------------------------------------
    def model(self) -> tuple[Path, dict[str, Any]] | None:
        """The current personalised model file and what it was trained from, or None."""
        with self._lock:
            row = self._db.execute("SELECT file, info FROM model").fetchone()
        return (self.models_dir / row[0], json.loads(row[1])) if row else None

    def new_model_path(self, suffix: str = ".mlmodel") -> Path:
        """A fresh name for the next personalised model (in ``models/``): a ``.mlmodel`` or ``.mlpackage``."""
        return self.models_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}{suffix}"

    def commit_training(self, model_file: Path, info: dict[str, Any], used: list[str]) -> None:
        """In one transaction: make ``model_file`` current with ``info`` and drop the ``used`` examples."""
        with self._lock:
            old = self._db.execute("SELECT file FROM model").fetchone()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO model VALUES (1, ?, ?)", (model_file.name, json.dumps(info)))
                files = self._delete_examples(used)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for f in files:
            (self.examples_dir / f).unlink(missing_ok=True)
        if old and old[0] != model_file.name:
            remove_model_file(self.models_dir / old[0])

    def reset(self) -> bool:
        """Forget the personalised model (and delete its file); returns whether there was one."""
        with self._lock:
            old = self._db.execute("SELECT file FROM model").fetchone()
            self._db.execute("DELETE FROM model")
        if old:
            remove_model_file(self.models_dir / old[0])
        return old is not None


def remove_model_file(path: Path) -> None:
    """Delete a model file, or a package folder (a ``.mlpackage``); nothing when it is gone already."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
