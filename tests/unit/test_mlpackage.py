"""Reading, validating and writing ``.mlpackage`` folders (real packages saved by coremltools).

The blob layout checked against: coremltools' MILBlob ``StorageFormat.hpp`` (64-byte header, 64-byte metadata
records with the 0xDEADBEEF sentinel) and its own sub-byte packing (``coremltools.optimize._utils``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlupdate
from mlupdate.errors import Error, ModelFileError, SpecError
from mlupdate.spec.io import import_coremltools, read_spec, write_spec
from mlupdate.spec.package import unpack
from tests.ops.mlprogram import save_program

WEIGHT = np.arange(32, dtype=np.float32).reshape(4, 8) / 7  # 32 values: coremltools stores them in weight.bin
WEIGHTS_BIN = Path("Data/com.apple.CoreML/weights/weight.bin")


def _build(x):
    from coremltools.converters.mil.mil import Builder as mb

    return mb.add(x=x, y=WEIGHT, name="out")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_program(_build, {"x": ((4, 8), np.float32)}, tmp_path_factory.mktemp("pkg") / "Add.mlpackage")


@pytest.fixture()
def copy(package: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "Copy.mlpackage"
    shutil.copytree(package, dest)
    return dest


X = np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)


def test_package_predicts_with_its_blob_weights(package: Path) -> None:
    assert (package / WEIGHTS_BIN).stat().st_size > 128  # the constant really is a blob
    out = mlupdate.load(package).predict({"x": X})["out"]
    np.testing.assert_allclose(out, X + WEIGHT, rtol=0, atol=0)
    assert out.dtype == np.float32 and out.shape == (4, 8)


def test_bare_spec_with_weights_folder_loads(package: Path, tmp_path: Path) -> None:
    shutil.copytree(package / "Data" / "com.apple.CoreML", tmp_path / "bare")
    out = mlupdate.load(tmp_path / "bare" / "model.mlmodel").predict({"x": X})["out"]
    np.testing.assert_allclose(out, X + WEIGHT, rtol=0, atol=0)


def _load_error(path: Path) -> Error:
    with pytest.raises(Error) as info:
        mlupdate.load(path, executor="torch")
    return info.value


def _patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, kind, words", [
    (lambda p: (p / WEIGHTS_BIN).unlink(), ModelFileError, "missing"),
    (lambda p: (p / WEIGHTS_BIN).write_bytes((p / WEIGHTS_BIN).read_bytes()[:40]), ModelFileError, "truncated"),
    (lambda p: (p / WEIGHTS_BIN).write_bytes((p / WEIGHTS_BIN).read_bytes()[:100]), SpecError, "truncated"),
    (lambda p: (p / WEIGHTS_BIN).write_bytes((p / WEIGHTS_BIN).read_bytes()[:200]), SpecError, "outside"),
    (lambda p: _patch(p / WEIGHTS_BIN, 64, struct.pack("<I", 0xBAADF00D)), SpecError, "sentinel"),
    (lambda p: _patch(p / WEIGHTS_BIN, 4, struct.pack("<I", 7)), ModelFileError, "version 7"),
    (lambda p: _patch(p / WEIGHTS_BIN, 68, struct.pack("<I", 1)), SpecError, "float16"),  # dtype code: fp16
    (lambda p: _patch(p / WEIGHTS_BIN, 72, struct.pack("<Q", 64)), SpecError, "declares shape"),
    (lambda p: _patch(p / WEIGHTS_BIN, 80, struct.pack("<Q", 1 << 40)), SpecError, "outside"),
    (lambda p: (p / "Manifest.json").write_text("{not json"), ModelFileError, "Manifest.json"),
    (lambda p: (p / "Manifest.json").write_text(json.dumps({"itemInfoEntries": {}})), ModelFileError, "root"),
    (lambda p: (p / "Manifest.json").write_text(json.dumps(
        {"itemInfoEntries": {"a": {"path": "../../etc/passwd"}}, "rootModelIdentifier": "a"})), ModelFileError,
     "not a path inside"),
    (lambda p: (p / "Manifest.json").unlink(), ModelFileError, "Manifest.json"),
    (lambda p: (p / "Data/com.apple.CoreML/model.mlmodel").unlink(), ModelFileError, "lacks its model spec"),
    (lambda p: (p / "Data/com.apple.CoreML/model.mlmodel").write_bytes(b"\x0a\xff\xff"), ModelFileError,
     "not a readable"),
], ids=["no-weights", "header-cut", "metadata-cut", "data-cut", "sentinel", "version", "dtype", "size", "offset",
        "manifest-json", "manifest-root", "manifest-escape", "no-manifest", "no-spec", "spec-garbage"])
def test_damaged_packages_are_refused_with_a_reason(copy: Path, damage, kind, words: str) -> None:
    damage(copy)
    err = _load_error(copy)
    assert isinstance(err, kind), err
    assert words in str(err)


def test_blob_over_the_array_limit_is_refused_before_reading(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLUPDATE_MAX_ARRAY_ELEMENTS", "16")  # the blob declares 32 values
    err = _load_error(copy)
    assert isinstance(err, SpecError) and "limit" in str(err)


@pytest.mark.parametrize("dtype, bits", [("uint1", 1), ("uint2", 2), ("uint3", 3), ("uint4", 4), ("uint6", 6),
                                         ("int4", 4)])
def test_sub_byte_unpacking_matches_coremltools_packing(dtype: str, bits: int) -> None:
    from coremltools.converters.mil.mil import types
    from coremltools.optimize import _utils

    rng = np.random.default_rng(bits)
    lo, hi = (-8, 8) if dtype == "int4" else (0, 1 << bits)
    values = rng.integers(lo, hi, size=(3, 7)).astype(np.int8 if dtype == "int4" else np.uint8)
    packed = _utils.pack_elements_into_bits(values, getattr(types, dtype).get_bitwidth())
    np.testing.assert_array_equal(unpack(packed.tobytes(), dtype, (3, 7)), values)


def test_write_keeps_weights_byte_identical_and_coremltools_reads_it(package: Path, tmp_path: Path) -> None:
    ct = import_coremltools()
    model = mlupdate.load(package)
    dest = model.write(tmp_path / "Out.mlpackage")
    assert (dest / WEIGHTS_BIN).read_bytes() == (package / WEIGHTS_BIN).read_bytes()
    loaded = ct.models.MLModel(str(dest), skip_model_load=True)
    assert loaded.get_spec().WhichOneof("Type") == "mlProgram"
    assert Path(loaded.weights_dir).is_dir()
    np.testing.assert_allclose(mlupdate.load(dest).predict({"x": X})["out"], X + WEIGHT, rtol=0, atol=0)


def test_write_over_an_existing_package_swaps_it_whole(copy: Path) -> None:
    stale = copy / "Data" / "stale.txt"
    stale.write_text("from before")
    model = mlupdate.load(copy)
    model.write(copy)  # the package it was read from
    assert not stale.exists()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["Copy.mlpackage"]  # no temp folders left
    np.testing.assert_allclose(mlupdate.load(copy).predict({"x": X})["out"], X + WEIGHT, rtol=0, atol=0)


def test_write_refuses_a_file_destination(package: Path, tmp_path: Path) -> None:
    target = tmp_path / "file.mlpackage"
    target.write_text("a file")
    with pytest.raises(ModelFileError, match="not an existing file"):
        mlupdate.load(package).write(target)
    assert target.read_text() == "a file"


def test_cache_key_covers_the_weights(copy: Path) -> None:
    first = mlupdate.load(copy).predict({"x": X})["out"]
    raw = bytearray((copy / WEIGHTS_BIN).read_bytes())
    raw[128:132] = struct.pack("<f", 100.0)  # the first weight, same size and layout
    (copy / WEIGHTS_BIN).write_bytes(bytes(raw))
    second = mlupdate.load(copy).predict({"x": X})["out"]
    assert second[0, 0] == pytest.approx(X[0, 0] + 100.0)
    np.testing.assert_array_equal(second.reshape(-1)[1:], first.reshape(-1)[1:])


def test_warm_load_runs_without_torch(package: Path) -> None:
    mlupdate.load(package)  # compiles and caches the export
    code = ("import sys, numpy as np, mlupdate; m = mlupdate.load(sys.argv[1], compute_units='cpu_only'); "
            "out = m.predict({'x': np.ones((4, 8), np.float32)})['out']; "
            "print(m.executor, 'torch' in sys.modules, float(out[0, 1]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, str(package)], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    executor, torch_loaded, value = done.stdout.split()
    assert (executor, torch_loaded) == ("onnxruntime", "False")
    assert float(value) == pytest.approx(1 + WEIGHT[0, 1])


def test_inspect_lists_functions_and_ops(package: Path) -> None:
    from mlupdate.spec.io import read_spec
    from mlupdate.spec.summary import summarize

    info = summarize(read_spec(package))
    assert info["runs"] is True
    (fn,) = info["program"]["functions"]
    assert fn["name"] == "main" and fn["inputs"] == ["x"] and fn["ops"]["add"] == 1


def test_an_ml_program_is_not_written_as_a_bare_mlmodel(package: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"Out\.mlpackage"):
        mlupdate.load(package).write(tmp_path / "Out.mlmodel")
    assert not (tmp_path / "Out.mlmodel").exists()


def test_program_input_over_the_array_limit_is_refused(copy: Path) -> None:
    spec = read_spec(copy)
    dims = spec.mlProgram.functions["main"].inputs[0].type.tensorType.dimensions
    dims[0].constant.size = 1 << 40  # the function's input, not the description, declares the huge size
    write_spec(spec, copy / "Data" / "com.apple.CoreML" / "model.mlmodel")
    with pytest.raises(SpecError, match="limit"):
        mlupdate.load(copy)


def test_lint_reads_the_package_weights(package: Path) -> None:
    assert mlupdate.lint(package) == []
    assert mlupdate.lint(mlupdate.load(package)) == []


def test_a_spec_without_its_file_cannot_find_blob_weights(package: Path) -> None:
    with pytest.raises(SpecError, match="by path"):
        mlupdate.Model(read_spec(package))
