"""Conformance: the corpus networks converted by coremltools to ML Programs (its default since coremltools 7)
predict like PyTorch, in fp32 and in fp16 (coremltools' default compute precision), on both executors.

The architectures are those of ``test_converted_models.py`` (the neural-network backend's corpus). fp32 programs
match the torch module within 1e-4; fp16 programs hold every value in fp16, so they match within what fp16 allows:
1e-2 of the output's scale (about 20 roundings of 2^-11 each).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from mlupdate.spec.io import import_coremltools
from tests.conformance.test_converted_models import ARRAY_MODELS, ATOL, IMAGE_MODELS, _init

EXECUTORS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16")
FP16_SCALE = 1e-2


def _convert(module: torch.nn.Module, example: torch.Tensor, path, precision: str, **kw) -> str:
    ct = import_coremltools()
    traced = torch.jit.trace(module, example)
    ct.convert(traced, convert_to="mlprogram", compute_precision=getattr(ct.precision, {"fp32": "FLOAT32",
               "fp16": "FLOAT16"}[precision]), **kw).save(str(path))
    return str(path)


def _tol(want: np.ndarray, precision: str) -> float:
    return ATOL if precision == "fp32" else FP16_SCALE * max(1.0, float(np.abs(want).max()))


@pytest.fixture(scope="module", params=[(m, p) for m in ARRAY_MODELS for p in PRECISIONS],
                ids=lambda mp: f"{mp[0]}-{mp[1]}")
def array_program(request, tmp_path_factory):
    ct = import_coremltools()
    name, precision = request.param
    cls, shape = ARRAY_MODELS[name]
    torch.manual_seed(0)
    module = _init(cls(), 0)
    path = _convert(module, torch.rand(*shape), tmp_path_factory.mktemp(name) / "m.mlpackage", precision,
                    inputs=[ct.TensorType(name="input", shape=shape)])
    return name, precision, module, shape, path


@pytest.mark.parametrize("executor", EXECUTORS)
def test_converted_program_matches_torch(array_program, executor):
    name, precision, module, shape, path = array_program
    model = mlupdate.load(path, executor=executor)
    assert model.executor == executor
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(3)]
    with torch.no_grad():
        want = [module(torch.from_numpy(x)).numpy() for x in xs]
    results = [model.predict({"input": xs[0]}), *model.predict_batch([{"input": x} for x in xs])]
    for res, w in zip(results, [want[0], *want], strict=True):
        (got,) = res.values()
        assert got.dtype == np.float32 and got.shape == w.shape
        np.testing.assert_allclose(got, w, atol=_tol(w, precision), rtol=0, err_msg=f"{name} {precision}")


@pytest.fixture(scope="module", params=[(m, p) for m in IMAGE_MODELS for p in PRECISIONS],
                ids=lambda mp: f"{mp[0]}-{mp[1]}")
def image_program(request, tmp_path_factory):
    ct = import_coremltools()
    name, precision = request.param
    cls, size, pre = IMAGE_MODELS[name]
    module = _init(cls(), 1)
    kw = dict(pre)
    kw["color_layout"] = getattr(ct.colorlayout, kw["color_layout"])
    labels = [f"class{i}" for i in range(module(torch.rand(1, 3, size, size)).shape[1])]
    path = _convert(module, torch.rand(1, 3, size, size), tmp_path_factory.mktemp(name) / "m.mlpackage", precision,
                    inputs=[ct.ImageType(name="input", shape=(1, 3, size, size), **kw)],
                    classifier_config=ct.ClassifierConfig(labels))
    return module, size, pre, labels, precision, path


@pytest.mark.parametrize("executor", EXECUTORS)
def test_converted_image_classifier_program_matches_torch(image_program, executor):
    module, size, pre, labels, precision, path = image_program
    model = mlupdate.load(path, executor=executor)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]
    for img, res in zip(images, model.predict_batch([{"input": im} for im in images]), strict=True):
        chw = img.astype(np.float32).transpose(2, 0, 1)
        if pre["color_layout"] == "BGR":
            chw = chw[::-1]
        x = chw * pre["scale"] + np.asarray(pre["bias"], np.float32)[:, None, None]
        with torch.no_grad():
            want = module(torch.from_numpy(np.ascontiguousarray(x))[None]).numpy()[0]
        probs = next(v for v in res.values() if isinstance(v, dict))
        np.testing.assert_allclose([probs[lab] for lab in labels], want, atol=_tol(want, precision), rtol=0)
        if precision == "fp32" or np.sort(want)[-1] - np.sort(want)[-2] > 2 * _tol(want, precision):
            assert next(v for v in res.values() if isinstance(v, str)) == labels[int(np.argmax(want))]
