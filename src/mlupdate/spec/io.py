"""Read and write ``.mlmodel`` files through coremltools' protobuf classes.

Writes are atomic: the bytes go to a temporary file in the target folder, are flushed
and fsynced, then renamed over the target, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import stat
import sys
import tempfile
import threading
import types
import warnings
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from mlupdate.errors import ModelFileError
from mlupdate.spec.package import is_package, model_dir, spec_file


def _import_proto() -> Any:
    """Import coremltools' protobuf classes without running coremltools' package init.

    ``import coremltools`` imports torch, sympy and its converters (seconds, hundreds of MiB); the
    generated ``coremltools/proto/*_pb2.py`` modules need none of it. While they are imported, a bare
    placeholder stands in for the ``coremltools`` package (its ``__path__`` only); it is removed
    afterwards, so a later ``import coremltools`` runs the real init and reuses these same proto
    modules (one set of message classes, as coremltools' own ``isinstance`` checks need).
    """
    if "coremltools" in sys.modules:  # already imported (by the user, or for authoring): use it as it is
        from coremltools.proto import Model_pb2 as proto

        return proto
    found = importlib.util.find_spec("coremltools")
    if found is None or not found.submodule_search_locations:
        raise ImportError("mlupdate needs coremltools (its protobuf classes): pip install coremltools")
    placeholder = types.ModuleType("coremltools")
    placeholder.__path__ = list(found.submodule_search_locations)
    sys.modules["coremltools"] = placeholder
    try:
        from coremltools.proto import Model_pb2 as proto
    finally:
        del sys.modules["coremltools"]
    return proto


Model_pb2 = _import_proto()


def import_coremltools() -> Any:
    """The full coremltools package (for authoring), imported without its import-time noise on Linux.

    coremltools logs "Failed to load _MLModelProxy" (no Core ML framework off macOS) and a
    torch-version warning when imported; neither concerns mlupdate.
    """
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import coremltools
    finally:
        log.setLevel(level)
    return coremltools

ModelSpec = Any  # Model_pb2.Model; protobuf classes carry no static types


GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Read a ``.mlmodel`` file or an ``.mlpackage`` folder's spec into a ``Model_pb2.Model``.

    An ML Program's weights stay in the package (:mod:`mlupdate.spec.package`); they are read when it is built.

    Args:
        path: Path of the ``.mlmodel`` file or ``.mlpackage`` folder.

    Returns:
        The parsed specification.

    Raises:
        ModelFileError: If the file is missing, is a compiled ``.mlmodelc`` folder or a damaged package, is
            truncated, or is not a Core ML model.
    """
    p = Path(path)
    if p.is_dir():
        if p.suffix == ".mlpackage" or is_package(p):
            p = spec_file(p)  # the package's root model (Manifest.json), checked
        else:
            raise ModelFileError(
                f"{p} is a folder (a compiled .mlmodelc?). mlupdate reads the source .mlmodel file or "
                ".mlpackage; pass the one Xcode compiled it from."
            )
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"No model file at {p}: check the path.") from None
    except OSError as exc:
        raise ModelFileError(f"Cannot read {p}: {exc.strerror}. Check the file's permissions.") from None
    if data.startswith(GIT_LFS_POINTER):
        raise ModelFileError(
            f"{p} is a Git LFS pointer ({len(data)} bytes of text), not the model itself: the repository keeps its "
            "models in Git LFS. Run `git lfs install && git lfs pull` in that repository to download the real file."
        )
    return parse_spec(data, source=str(p))


def parse_spec(data: bytes, source: str = "<bytes>") -> ModelSpec:
    """Parse ``.mlmodel`` bytes, checking that they really are a Core ML model.

    Args:
        data: The serialized ``Model`` protobuf.
        source: A name for the data in error messages.

    Returns:
        The parsed specification.

    Raises:
        ModelFileError: If the bytes are empty, truncated or not a Core ML model.
    """
    if not data:
        raise ModelFileError(f"{source} is empty: it is not a Core ML model. Re-export or re-download it.")
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(
            f"{source} is not a readable Core ML .mlmodel file (the protobuf does not parse: {exc}). "
            "It may be truncated or of another format; re-export it with coremltools."
        ) from None
    if spec.WhichOneof("Type") is None or spec.specificationVersion <= 0:
        raise ModelFileError(
            f"{source} parses as protobuf but holds no Core ML model (no model type or specification "
            "version). Check that this is a .mlmodel file, not another format."
        )
    return spec


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write bytes to ``path`` atomically (temp file in the same folder, fsync, rename).

    A file that is replaced keeps its permission bits; a new file gets ``0o666`` less the umask,
    like any file a program creates. A symbolic link is followed: its target is replaced and the
    link stays a link.

    Args:
        data: The bytes to write.
        path: Destination path; its folder must exist.

    Returns:
        The destination path.

    Raises:
        ModelFileError: For an empty path, a folder, a missing or unwritable folder, or any OS error
            while writing (disk full, quota, ...), naming the path and the reason.
    """
    if not str(path):
        raise ModelFileError("No file name given to write the model to. Pass a path such as 'Model.mlmodel'.")
    dest = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    if dest.is_dir():
        raise ModelFileError(f"Cannot write {dest}: it is a folder. Give a file path such as {dest / 'Model.mlmodel'}.")
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"Cannot write {dest}: folder {folder} does not exist. Create it first.")
    mode = stat.S_IMODE(dest.stat().st_mode) if dest.exists() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ModelFileError(f"Cannot write into {folder}: {exc.strerror}. Choose a writable folder.") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        _remove(tmp)
        hint = " Free some disk space and try again." if exc.errno == errno.ENOSPC else ""
        raise ModelFileError(f"Could not write {dest}: {exc.strerror or exc}.{hint} Nothing was changed there.") \
            from None
    except BaseException:
        _remove(tmp)
        raise
    return dest


def _remove(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


_umask_lock = threading.Lock()


def _umask() -> int:
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_spec(spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Serialize a specification to ``path`` atomically.

    Args:
        spec: A ``Model_pb2.Model``.
        path: Destination ``.mlmodel`` path.

    Returns:
        The destination path.
    """
    return write_bytes_atomic(spec.SerializeToString(deterministic=True), path)


def copy_spec(spec: ModelSpec) -> ModelSpec:
    """Return a deep copy of a specification."""
    out = Model_pb2.Model()
    out.CopyFrom(spec)
    return out


def folder_of(model_or_path: Any) -> Path | None:
    """The folder a model was read from; None for a bare spec.

    Linked models and an ML Program's weights are looked for from there (inside a package: its spec's folder).
    """
    if isinstance(model_or_path, str | os.PathLike):
        return model_dir(model_or_path)
    path = getattr(model_or_path, "path", None)  # an mlupdate.Model (or a coremltools MLModel's package path)
    return model_dir(path) if isinstance(path, str | os.PathLike) else None


def resolve_spec(model_or_path: Any) -> ModelSpec:
    """Return a private copy of the spec behind a path, a ``Model``, an ``MLModel`` or a spec.

    Args:
        model_or_path: A path, an :class:`mlupdate.Model`, a coremltools ``MLModel`` or a
            ``Model_pb2.Model``.

    Returns:
        A copy that the caller may modify freely.

    Raises:
        ModelFileError: If the object is none of those.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        return read_spec(model_or_path)
    if isinstance(model_or_path, Model_pb2.Model):
        return copy_spec(model_or_path)
    spec = getattr(model_or_path, "spec", None)
    if isinstance(spec, Model_pb2.Model):
        return copy_spec(spec)
    get_spec = getattr(model_or_path, "get_spec", None)
    if callable(get_spec):
        return copy_spec(get_spec())
    raise ModelFileError(
        f"Expected a .mlmodel path, an mlupdate.Model, a coremltools MLModel or a spec, got "
        f"{type(model_or_path).__name__}."
    )
