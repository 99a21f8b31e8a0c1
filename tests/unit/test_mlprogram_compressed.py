"""ML Programs compressed by ``coremltools.optimize.coreml``: their ``constexpr_*`` ops are folded at load and
predict like the same program with the weights decompressed by coremltools' own ``decompress_weights``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mlupdate
from mlupdate.spec.io import import_coremltools, read_spec
from mlupdate.spec.summary import summarize


@pytest.fixture(scope="module", params=[16, 18], ids=["iOS16", "iOS18"])
def converted(request, tmp_path_factory: pytest.TempPathFactory):
    ct = import_coremltools()
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(16 * 6 * 6, 10)).eval()
    model = ct.convert(torch.jit.trace(net, torch.rand(1, 3, 8, 8)), convert_to="mlprogram",
                       inputs=[ct.TensorType(name="x", shape=(1, 3, 8, 8))], compute_precision=ct.precision.FLOAT32,
                       minimum_deployment_target=getattr(ct.target, f"iOS{request.param}"))
    return model, tmp_path_factory.mktemp("compressed"), request.param


def _configs(ios: int):
    ct = import_coremltools()
    o = ct.optimize.coreml
    ios18 = {
        "int4-blockwise": (o.linear_quantize_weights, o.OptimizationConfig(o.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int4", granularity="per_block", block_size=8, weight_threshold=8))),
        "palettize-grouped": (o.palettize_weights, o.OptimizationConfig(o.OpPalettizerConfig(
            nbits=3, granularity="per_grouped_channel", group_size=4, weight_threshold=8))),
    } if ios >= 18 else {}
    return {**ios18,
        "palettize-4bit": (o.palettize_weights,
                           o.OptimizationConfig(o.OpPalettizerConfig(nbits=4, weight_threshold=8))),
        "int8-linear": (o.linear_quantize_weights,
                        o.OptimizationConfig(o.OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=8))),
        "prune-50": (o.prune_weights,
                     o.OptimizationConfig(o.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=8))),
    }


@pytest.mark.parametrize("method", ["palettize-4bit", "int8-linear", "prune-50", "int4-blockwise",
                                    "palettize-grouped"])
def test_compressed_program_predicts_like_its_decompressed_weights(converted, method: str) -> None:
    ct = import_coremltools()
    model, folder, ios = converted
    if method not in _configs(ios):
        pytest.skip(f"{method} needs iOS18")
    compress, config = _configs(ios)[method]
    small = compress(model, config)
    small.save(str(folder / f"{method}.mlpackage"))
    ct.optimize.coreml.decompress_weights(small).save(str(folder / f"{method}-dense.mlpackage"))
    ops = summarize(read_spec(folder / f"{method}.mlpackage"))["program"]["functions"][0]["ops"]
    assert any(op.startswith("constexpr_") for op in ops)  # really compressed
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    got = next(iter(mlupdate.load(folder / f"{method}.mlpackage").predict({"x": x}).values()))
    want = next(iter(mlupdate.load(folder / f"{method}-dense.mlpackage").predict({"x": x}).values()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_compressed_package_is_smaller_on_disk(converted) -> None:
    _, folder, _ = converted
    sizes = {p.parent.parent.parent.name: p.stat().st_size for p in Path(folder).glob("*/Data/*/weights/weight.bin")}
    for name, size in sizes.items():
        if not name.endswith("-dense.mlpackage") and name.startswith("palettize"):
            assert size < sizes[name.replace(".mlpackage", "-dense.mlpackage")] / 3
