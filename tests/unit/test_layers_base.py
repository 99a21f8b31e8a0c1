"""Shared helpers for the single-layer tests, and the registry's error behaviour.

Each layer test builds a one-layer (or few-layer) spec with coremltools' NeuralNetworkBuilder,
writes it to disk, loads it with ``mlupdate.load`` on both executors, runs a batch of examples
and compares with a reference computed here with torch or numpy.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlupdate

logging.getLogger("coremltools").setLevel(logging.ERROR)

EXECUTORS = ("torch", "onnxruntime")
_counter = itertools.count()


def builder(inputs: Sequence[tuple[str, Sequence[int]]], outputs: Sequence[str] = ("out",), nd: bool = False) -> Any:
    """A NeuralNetworkBuilder with float multiarray inputs of the given shapes and untyped outputs."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    return NeuralNetworkBuilder(
        [(n, datatypes.Array(*s)) for n, s in inputs], [(o, None) for o in outputs],
        disable_rank5_shape_mapping=nd,
    )


def save(b: Any, tmp: Path) -> Path:
    """Write the builder's spec to a fresh file under ``tmp`` (checked by coremltools first)."""
    import coremltools as ct

    path = tmp / f"m{next(_counter)}.mlmodel"
    ct.utils.save_spec(b.spec, str(path))
    return path


def run(path: Path, executor: str, examples: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Load ``path`` with ``executor`` and predict every example in one batch."""
    model = mlupdate.load(path, executor=executor)
    return model.predict_batch(examples)


def check_layer(tmp: Path, executor: str, add: Callable[[Any], Any], inputs: dict[str, np.ndarray],
                reference: Callable[..., np.ndarray | Sequence[np.ndarray]], *, nd: bool = False,
                outputs: Sequence[str] = ("out",), batch: int = 2, atol: float = 1e-5, seed: int = 0,
                rtol: float = 1e-5) -> None:
    """Build a network with ``add(builder)``, run ``batch`` random examples, compare with ``reference``.

    Args:
        tmp: Directory for the model file.
        executor: ``torch`` or ``onnxruntime``.
        add: Adds the layer(s) to the builder; the network input names are ``inputs``' keys.
        inputs: Example arrays (one example, declared shape); later examples shuffle their values.
        reference: Maps one example's input arrays (in order) to the expected output(s), shaped as the
            output should come back for that example.
        nd: Build an ND (exact array mapping) network.
        outputs: Output blob names.
        batch: Examples in the batch.
        atol: Absolute tolerance.
        seed: Seed of the extra examples.
    """
    b = builder([(k, v.shape) for k, v in inputs.items()], outputs, nd=nd)
    add(b)
    path = save(b, tmp)
    rng = np.random.default_rng(seed)
    examples = [dict(inputs)]
    for _ in range(batch - 1):
        # the same values shuffled: keeps each input's domain (positive, integer, in range) intact
        examples.append({k: rng.permutation(v.ravel()).reshape(v.shape) for k, v in inputs.items()})
    got = run(path, executor, examples)
    for ex, res in zip(examples, got, strict=True):
        want = reference(*ex.values())
        want = [want] if isinstance(want, np.ndarray) else list(want)
        for name, w in zip(outputs, want, strict=True):
            g = np.asarray(res[name])
            assert g.shape == w.shape, (name, g.shape, w.shape)
            np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=name)


@dataclass(frozen=True)
class Case:
    """One reference test of one or more layer kinds (see ``check_layer`` for the fields).

    The kinds a case covers are read from the spec that ``add`` builds, so they cannot drift
    from what the case really runs.
    """

    id: str
    add: Callable[[Any], Any]
    inputs: dict[str, np.ndarray]
    reference: Callable[..., np.ndarray | Sequence[np.ndarray]]
    nd: bool = False
    outputs: Sequence[str] = ("out",)
    batch: int = 2
    atol: float = 1e-5
    rtol: float = 1e-5
    executors: Sequence[str] = EXECUTORS

    def builder(self) -> Any:
        """A fresh builder with this case's layers added."""
        b = builder([(k, v.shape) for k, v in self.inputs.items()], self.outputs, nd=self.nd)
        self.add(b)
        return b

    def kinds(self) -> set[str]:
        """The layer kinds (protobuf oneof names) this case's network uses, nested networks included."""
        return layer_kinds(self.builder().nn_spec.layers)

    def check(self, tmp: Path, executor: str) -> None:
        """Run the case on ``executor`` and compare with the reference."""
        check_layer(tmp, executor, self.add, self.inputs, self.reference, nd=self.nd, outputs=self.outputs,
                    batch=self.batch, atol=self.atol, rtol=self.rtol)


def layer_kinds(layers: Any) -> set[str]:
    """Kinds of ``layers`` and of every layer in their nested networks (branch and loop bodies)."""
    kinds: set[str] = set()
    for layer in layers:
        kind = layer.WhichOneof("layer")
        kinds.add(kind)
        params = getattr(layer, kind)
        for field, value in params.ListFields():
            if field.message_type is not None and field.message_type.name == "NeuralNetwork":
                kinds |= layer_kinds(value.layers)
    return kinds


def case_test(cases: Sequence[Case]) -> Callable[..., None]:
    """A pytest test running every case on each of its executors (assign it to a ``test_*`` name)."""
    pairs = [(c, e) for c in cases for e in c.executors]

    @pytest.mark.parametrize(("case", "executor"), pairs, ids=[f"{c.id}-{e}" for c, e in pairs])
    def test(tmp_path: Path, case: Case, executor: str) -> None:
        case.check(tmp_path, executor)

    return test


def rand(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Uniform float32 test data."""
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


# -- registry errors ---------------------------------------------------------------------------------


def test_unsupported_layer_names_layer_type_and_supported_list(tmp_path):
    b = builder([("x", (3,))], ("out",), nd=True)
    b.spec.specificationVersion = 5
    layer = b.nn_spec.layers.add()
    layer.name = "my_layer"
    layer.input.append("x")
    layer.output.append("out")  # no layer kind set: nothing can ever implement it
    with pytest.raises(mlupdate.UnsupportedLayerError) as err:
        mlupdate.load(save(b, tmp_path))
    msg = str(err.value)
    assert "my_layer" in msg
    assert "convolution" in msg and "innerProduct" in msg and "reduceMean" in msg


def test_weight_count_mismatch_is_a_spec_error(tmp_path):
    b = builder([("x", (4,))], ("out",))
    b.add_inner_product("fc", np.ones((2, 4), np.float32), None, 4, 2, False, "x", "out")
    del b.spec.neuralNetwork.layers[0].innerProduct.weights.floatValue[-1]
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="fc"):
        mlupdate.load(path)


def test_every_registered_kind_is_a_layer_oneof_name():
    from coremltools.proto import NeuralNetwork_pb2

    from mlupdate.layers import supported_layers

    names = {f.name for f in NeuralNetwork_pb2.NeuralNetworkLayer.DESCRIPTOR.oneofs_by_name["layer"].fields}
    supported = supported_layers()
    assert set(supported) <= names
    assert len(supported) >= 100
