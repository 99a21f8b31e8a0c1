"""The on-disk cache of compiled (ONNX-exported) models: content-keyed, bounded, least recently used first out.

Every file is written atomically (a temp file renamed into place), so readers never see a partial
artifact and several processes compiling the same model at once end with one file. A hit refreshes
the file's modification time; after each write the oldest files go until the cache fits its limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlupdate.errors import Error
from mlupdate.spec.io import write_bytes_atomic

MAX_MB_ENV = "MLUPDATE_CACHE_MAX_MB"
DEFAULT_MAX_MB = 512


def cache_dir() -> Path:
    """Where compiled models are cached (``$MLUPDATE_CACHE_DIR`` or ``~/.cache/mlupdate``)."""
    root = os.environ.get("MLUPDATE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mlupdate")
    return Path(root) / "onnx"


def max_bytes() -> int:
    """The cache's size limit (``$MLUPDATE_CACHE_MAX_MB``, default 512 MB)."""
    value = os.environ.get(MAX_MB_ENV, "")
    return int(float(value) * 2**20) if value.replace(".", "", 1).isdigit() else DEFAULT_MAX_MB * 2**20


def content_key(spec: Any) -> str:
    """A model's cache key: the hash of its deterministic serialisation (the same in every process)."""
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()


def read(name: str) -> bytes | None:
    """The cached artifact ``name``, marked as just used; None when absent."""
    path = cache_dir() / name
    try:
        data = path.read_bytes()
        os.utime(path)
    except OSError:
        return None
    return data


def path_of(name: str) -> Path | None:
    """The file of the cached artifact ``name``, marked as just used; None when absent."""
    path = cache_dir() / name
    try:
        os.utime(path)
    except OSError:
        return None
    return path


def write(name: str, data: bytes) -> None:
    """Store an artifact atomically, then evict the least recently used ones over the limit.

    The cache is an optimisation: a failure to write is ignored.
    """
    path = cache_dir() / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(data, path)
    except (OSError, Error):
        return
    evict(max_bytes(), keep=path)


@dataclass(frozen=True)
class CacheInfo:
    """What the cache holds: its folder, artifact count and total size in bytes."""

    folder: Path
    files: int
    size: int


def _artifacts() -> list[Path]:
    folder = cache_dir()
    return [p for p in folder.glob("*.onnx") if p.is_file()] if folder.is_dir() else []


def info() -> CacheInfo:
    """The cache's folder, number of artifacts and total size."""
    files = _artifacts()
    return CacheInfo(cache_dir(), len(files), sum(_size(p) for p in files))


def evict(limit: int, keep: Path | None = None) -> int:
    """Remove the least recently used artifacts until the cache holds at most ``limit`` bytes.

    Args:
        limit: Size limit in bytes (0 empties the cache).
        keep: An artifact never removed (the one just written).

    Returns:
        How many files were removed.
    """
    files = sorted(_artifacts(), key=_mtime)
    total = sum(_size(p) for p in files)
    removed = 0
    for path in files:
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        total -= _size(path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
