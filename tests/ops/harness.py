"""Run one MIL op kernel from the registry on numpy inputs (the op tests' entry point).

The expected values come from each test: numpy written from the op definition's docstring, or PyTorch.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from mlupdate.ops import OpContext, kernel_for


def _tensor(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_tensor(v) for v in value]
    if isinstance(value, str) or np.asarray(value).dtype.kind in "US":
        return value  # string parameters (modes) are constants only: kernels read them from ctx.consts
    return torch.from_numpy(np.ascontiguousarray(value))


def run_kernel(op_type: str, inputs: dict[str, Any], *, consts: Iterable[str] | None = None, opset: int = 15,
               attrs: dict[str, Any] | None = None, out_types: tuple[Any, ...] = ()) -> Any:
    """Run ``op_type`` on ``inputs`` (numpy arrays, or lists of them for variadic parameters).

    ``consts`` names the inputs that are compile-time constants (default: every input but ``x``).
    Returns numpy arrays (a tuple for ops with several outputs).
    """
    names = set(inputs) - {"x"} if consts is None else set(consts)
    ctx = OpContext(op_type, name=f"{op_type}_0", opset=opset,
                    consts={k: v for k, v in inputs.items() if k in names}, attrs=attrs or {},
                    out_types=out_types, dynamic=frozenset(set(inputs) - names))
    out = kernel_for(op_type, opset, ctx.name)(ctx, {k: _tensor(v) for k, v in inputs.items()})
    if isinstance(out, (tuple, list)):
        return tuple(o.numpy() if isinstance(o, torch.Tensor) else o for o in out)
    return out.numpy()


def run_exported(op_type: str, inputs: dict[str, Any], dynamic: Sequence[str] = ("x",), *, opset: int = 15) -> tuple:
    """Export ``op_type`` with the ``dynamic`` inputs as graph inputs (the rest constants) to ONNX as the runtime
    does (``torch.onnx.export(dynamo=False)``, opset 17), run it on onnxruntime, and return
    ``(onnx outputs, torch outputs)`` as tuples of numpy arrays.
    """
    consts = {k: v for k, v in inputs.items() if k not in dynamic}
    ctx = OpContext(op_type, name=f"{op_type}_0", opset=opset, consts=consts, dynamic=frozenset(dynamic))
    kernel = kernel_for(op_type, opset, ctx.name)

    class Op(torch.nn.Module):
        def forward(self, *args: torch.Tensor) -> Any:
            out = kernel(ctx, {**{k: _tensor(v) for k, v in consts.items()}, **dict(zip(dynamic, args, strict=True))})
            return tuple(out) if isinstance(out, (tuple, list)) else out

    args = tuple(_tensor(inputs[k]) for k in dynamic)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Op(), args, buf, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=False)})
    ref = Op()(*args)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return tuple(got), tuple(r.numpy() for r in ref)


def assert_exports(op_type: str, inputs: dict[str, Any], dynamic: Sequence[str], opset: int = 15,
                   atol: float = 1e-5) -> None:
    """The op exported to ONNX and run on onnxruntime gives what the torch kernel gives."""
    got, ref = run_exported(op_type, inputs, dynamic, opset=opset)
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=atol)
