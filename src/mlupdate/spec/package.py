"""``.mlpackage`` folders and the MIL blob storage file (``weight.bin``) of ML Programs.

A package is a folder::

    Model.mlpackage/
        Manifest.json                          itemInfoEntries {id: {path, ...}}, rootModelIdentifier
        Data/com.apple.CoreML/model.mlmodel    the spec (Model_pb2.Model of type mlProgram)
        Data/com.apple.CoreML/weights/weight.bin

The program names its large constants as ``blobFileValue {fileName: "@model_path/weights/weight.bin",
offset}``; ``@model_path`` is the folder holding the spec file (also for a bare ``.mlmodel`` of type
mlProgram with a ``weights`` folder beside it).

The blob storage format (coremltools' ``mlmodel/src/MILBlob/Blob/StorageFormat.hpp``): a 64-byte header
(``uint32 count``, ``uint32 version`` = 2, reserved), then per blob a 64-byte metadata record
(``uint32 sentinel`` = 0xDEADBEEF, ``uint32 dtype``, ``uint64 size in bytes``, ``uint64 data offset``,
``uint64 padding bits`` for sub-byte types, reserved) followed by the data; a blob file value's offset points at
its metadata record. Everything little-endian. Every read here is checked against the file's length and the
limits of :mod:`mlupdate.spec.limits` before anything is allocated.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import struct
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mlupdate.errors import ModelFileError, SpecError
from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, max_array_elements

MANIFEST = "Manifest.json"
MODEL_PATH = "@model_path"
SPEC_ITEM = "com.apple.CoreML/model.mlmodel"
WEIGHTS_ITEM = "com.apple.CoreML/weights"
HEADER = struct.Struct("<II")
METADATA = struct.Struct("<IIQQQ")
RECORD = 64
SENTINEL = 0xDEADBEEF
STORAGE_VERSION = 2

#: MILBlob's BlobDataType codes: (name, bits per element).
BLOB_DTYPES: dict[int, tuple[str, int]] = {
    1: ("float16", 16), 2: ("float32", 32), 3: ("uint8", 8), 4: ("int8", 8), 5: ("bfloat16", 16),
    6: ("int16", 16), 7: ("uint16", 16), 8: ("int4", 4), 9: ("uint1", 1), 10: ("uint2", 2), 11: ("uint4", 4),
    12: ("uint3", 3), 13: ("uint6", 6), 14: ("int32", 32), 15: ("uint32", 32), 16: ("float8e4m3fn", 8),
    17: ("float8e5m2", 8),
}


def is_package(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a package folder (it holds a ``Manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def spec_file(path: str | os.PathLike[str]) -> Path:
    """The spec file of a model: the package's root item, or ``path`` itself for a ``.mlmodel`` file.

    Raises:
        ModelFileError: For a damaged manifest or a root item that is missing.
    """
    p = Path(path)
    if not p.is_dir():
        return p
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{p} is a folder without {MANIFEST}: not an .mlpackage (or a damaged one). "
                             "Pass the .mlpackage folder coremltools saved, or the .mlmodel file.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{p / MANIFEST} is not readable JSON ({exc}): the package is damaged. "
                             "Save the model again with coremltools.") from None
    entries = manifest.get("itemInfoEntries") if isinstance(manifest, dict) else None
    root = manifest.get("rootModelIdentifier") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict) or not isinstance(root, str) or not isinstance(entries.get(root), dict):
        raise ModelFileError(f"{p / MANIFEST} names no root model (itemInfoEntries / rootModelIdentifier): the "
                             "package is damaged. Save the model again with coremltools.")
    rel = entries[root].get("path")
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ModelFileError(f"{p / MANIFEST} gives the root model the path {rel!r}, which is not a path inside "
                             "the package's Data folder. Save the model again with coremltools.")
    found = p / "Data" / Path(*parts)
    if not found.is_file():
        raise ModelFileError(f"{p} lacks its model spec {found.relative_to(p)} (named by {MANIFEST}): the package "
                             "is incomplete. Copy the whole .mlpackage folder.")
    return found


def model_dir(path: str | os.PathLike[str]) -> Path:
    """The folder ``@model_path`` means for the model at ``path`` (the folder of its spec file)."""
    return spec_file(path).resolve().parent


class BlobFile:
    """One MIL blob storage file, checked on open; :meth:`read` gives a blob as a numpy array.

    Args:
        path: The ``weight.bin`` file.

    Raises:
        ModelFileError: For a missing or unreadable file, or a header that is not blob storage version 2.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self._data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise ModelFileError(f"The weights file {path} is missing: the package is incomplete. Copy the whole "
                                 ".mlpackage folder (with Data/com.apple.CoreML/weights).") from None
        except OSError as exc:
            raise ModelFileError(f"Cannot read the weights file {path}: {exc.strerror}.") from None
        if len(self._data) < RECORD:
            raise ModelFileError(f"The weights file {path} holds {len(self._data)} bytes, less than its 64-byte "
                                 "header: it is truncated. Copy or save the package again.")
        count, version = HEADER.unpack_from(self._data, 0)
        if version != STORAGE_VERSION:
            raise ModelFileError(f"The weights file {path} is of blob storage version {version}; Core ML reads "
                                 f"version {STORAGE_VERSION}. The file is damaged or not MIL blob storage.")
        self.count = count

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        """Release the file's mapping."""
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def read(self, offset: int, dtype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
        """The blob whose metadata record is at ``offset``, as ``dtype`` with ``shape`` (sub-byte types unpacked).

        Args:
            offset: The blob file value's offset (its metadata record).
            dtype: The type the program declares (a numpy dtype name, or ``int4``/``uint1``...``uint6``/
                ``bfloat16``/``float8e4m3fn``/``float8e5m2``).
            shape: The shape the program declares.
            where: The value, for messages.

        Raises:
            SpecError: For an offset past the end, a wrong sentinel, a blob type or size that differs from the
                declaration, data past the end of the file, or more elements than the array limit.
        """
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if n > max_array_elements():
            raise SpecError(f"{where} declares {n} values, more than the limit of {max_array_elements()} (set "
                            f"{MAX_ARRAY_ELEMENTS_ENV} to allow more).")
        if offset < RECORD or offset + RECORD > len(self._data):
            raise SpecError(f"{where} points at offset {offset} of {self.path}, which holds {len(self._data)} bytes: "
                            "the weights file is truncated or does not belong to this model.")
        sentinel, code, nbytes, start, padding = METADATA.unpack_from(self._data, offset)
        if sentinel != SENTINEL:
            raise SpecError(f"{where}: no blob metadata at offset {offset} of {self.path} (sentinel {sentinel:#x}, "
                            f"expected {SENTINEL:#x}): the weights file is damaged or does not belong to this model.")
        stored, bits = BLOB_DTYPES.get(code, (f"code {code}", 0))
        if stored != dtype:
            raise SpecError(f"{where} declares {dtype} values but its blob at offset {offset} of {self.path} holds "
                            f"{stored}: the weights file does not belong to this model.")
        if start + nbytes > len(self._data) or start < offset + RECORD:
            raise SpecError(f"{where}: its blob's data ({nbytes} bytes at offset {start}) lies outside {self.path} "
                            f"({len(self._data)} bytes): the weights file is truncated or damaged.")
        if nbytes * 8 - padding != n * bits or padding >= 8:
            raise SpecError(f"{where} declares shape {list(shape)} ({n} {dtype} values) but its blob holds "
                            f"{nbytes} bytes less {padding} padding bits: the weights file does not belong to "
                            "this model.")
        return unpack(bytes(self._data[start:start + nbytes]), dtype, shape)


def unpack(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Little-endian bytes as a numpy array of ``shape``.

    Byte types as they are; sub-byte types unpacked (element ``i`` in bits ``[i*b, i*b + b)``, least significant
    first, ``int4`` sign-extended; held as int8 / uint8); ``bfloat16`` and the fp8 types widened to float32.
    """
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype == "bfloat16":
        arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype.startswith("float8"):
        import ml_dtypes

        kind = ml_dtypes.float8_e4m3fn if dtype == "float8e4m3fn" else ml_dtypes.float8_e5m2
        arr = np.frombuffer(raw, kind).astype(np.float32)
    elif dtype in SUB_BYTE:
        bits = SUB_BYTE[dtype]
        stream = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[: n * bits].reshape(n, bits)
        arr = (stream.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)
        if dtype == "int4":
            arr = np.where(arr > 7, arr.astype(np.int16) - 16, arr).astype(np.int8)
    else:
        arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)
    return arr[:n].reshape(shape)


#: Bits per element of the sub-byte types.
SUB_BYTE = {"int4": 4, "uint1": 1, "uint2": 2, "uint3": 3, "uint4": 4, "uint6": 6}


class Weights:
    """The blob files of one model, opened on first use and checked as they are read.

    Args:
        folder: What ``@model_path`` means (the folder of the spec file); None for a spec not read from a file.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._files: dict[str, BlobFile] = {}

    def file(self, name: str) -> BlobFile:
        """The blob file a ``blobFileValue.fileName`` names.

        Raises:
            SpecError: For a name outside ``@model_path``, or a spec that was not read from a file.
            ModelFileError: For a missing or damaged file.
        """
        if name not in self._files:
            rel = PurePosixPath(name)
            parts = rel.parts[1:] if rel.parts[:1] == (MODEL_PATH,) else ()
            if not parts or ".." in parts:
                raise SpecError(f"The program names the weights file {name!r}; Core ML reads weights only from "
                                f"inside the model ({MODEL_PATH}/weights/...). Save the model again with coremltools.")
            if self.folder is None:
                raise SpecError(f"The program keeps weights in {name!r}, but the spec was not read from a file: load "
                                "the .mlpackage (or the .mlmodel beside its weights folder) by path.")
            self._files[name] = BlobFile(self.folder.joinpath(*parts))
        return self._files[name]

    def close(self) -> None:
        """Release every open blob file."""
        for f in self._files.values():
            f.close()
        self._files.clear()


def write_package(spec: Any, dest: str | os.PathLike[str], weights_from: Path | None) -> Path:
    """Write ``spec`` as an ``.mlpackage`` folder, atomically, with the weights of ``weights_from`` unchanged.

    The package is assembled in a temporary folder beside ``dest`` (every file fsynced); an existing package at
    ``dest`` is then renamed aside, the new one renamed into place and the old one removed (if the second rename
    fails the old package is put back). Weight files are copied byte for byte.

    Args:
        spec: A ``Model_pb2.Model``.
        dest: The ``.mlpackage`` folder to write.
        weights_from: The model's ``@model_path`` folder whose ``weights`` folder is copied (None: no weights).

    Returns:
        The destination folder.

    Raises:
        ModelFileError: For a destination that is a file, a missing parent folder, missing source weights or any
            OS error (nothing is changed at ``dest`` then).
    """
    target = Path(dest)
    if not str(dest) or target.is_file() or target.is_symlink():
        raise ModelFileError(f"Cannot write the package to {target}: give a folder path such as 'Model.mlpackage' "
                             "that is not an existing file.")
    if not target.parent.is_dir():
        raise ModelFileError(f"Cannot write {target}: folder {target.parent} does not exist. Create it first.")
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        tmp.mkdir()  # as any folder a program creates: 0o777 less the umask
    except OSError as exc:
        raise ModelFileError(f"Cannot write into {target.parent}: {exc.strerror}. Choose a writable folder.") from None
    try:
        _assemble(tmp, spec, weights_from)
        _swap(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelFileError(f"Could not write {target}: {exc.strerror or exc}. Nothing was changed there.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _assemble(root: Path, spec: Any, weights_from: Path | None) -> None:
    data = root / "Data"
    (data / SPEC_ITEM).parent.mkdir(parents=True)
    _write_synced(data / SPEC_ITEM, spec.SerializeToString(deterministic=True))
    source = weights_from / "weights" if weights_from is not None else None
    if source is not None and source.is_dir():
        shutil.copytree(source, data / WEIGHTS_ITEM)
        for f in (data / WEIGHTS_ITEM).rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
    entries = {str(uuid.uuid4()).upper(): {"author": "com.apple.CoreML", "description": desc, "name": name,
                                           "path": path}
               for desc, name, path in (("CoreML Model Specification", "model.mlmodel", SPEC_ITEM),
                                        ("CoreML Model Weights", "weights", WEIGHTS_ITEM))}
    manifest = {"fileFormatVersion": "1.0.0", "itemInfoEntries": entries, "rootModelIdentifier": next(iter(entries))}
    _write_synced(root / MANIFEST, json.dumps(manifest, indent=4).encode())


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _swap(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.replace(tmp, target)
        return
    if not target.is_dir():
        raise ModelFileError(f"Cannot write the package to {target}: it is a file. Remove it or choose another path.")
    aside = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.old"
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

