"""End to end through coremltools: build a MIL program with its builder, save a real ``.mlpackage``, load it with
mlupdate and predict (for op and runtime tests).

coremltools converts and saves ML Programs on Linux (it cannot run them there): the expected values come from
each test (numpy from the op's documented semantics, or PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mlupdate
from mlupdate.spec.io import import_coremltools

TARGETS = {15: "iOS15", 16: "iOS16", 17: "iOS17", 18: "iOS18"}
_MIL_DTYPES = {np.float32: "fp32", np.float16: "fp16", np.int32: "int32", np.bool_: "bool", np.int8: "int8"}


def save_program(build: Callable[..., Any], tensors: dict[str, tuple[tuple[int, ...], Any]], path: Path, *,
                 opset: int = 15, fp16: bool = False, states: dict[str, tuple[tuple[int, ...], Any]] | None = None,
                 **convert: Any) -> Path:
    """Build ``build(**inputs)`` with coremltools' MIL builder, convert and save it as the package ``path``.

    Args:
        build: Called with one builder value per input (and state), by name; returns the output value(s).
        tensors: Input name to ``(shape, numpy dtype)``; None in a shape is a symbolic (flexible) dimension.
        path: The ``.mlpackage`` folder to write.
        opset: The iOS release of the program's opset and deployment target (15 to 18).
        fp16: Convert with coremltools' default fp16 compute precision (else fp32).
        states: State name to ``(shape, numpy dtype)`` (iOS18 stateful programs), passed before the inputs.
        convert: More arguments of ``coremltools.convert``.
    """
    ct = import_coremltools()
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import Function, Program, types

    specs = {n: mb.StateTensorSpec(shape, dtype=getattr(types, _MIL_DTYPES[np.dtype(dt).type]))
             for n, (shape, dt) in (states or {}).items()}
    from coremltools.converters.mil.mil.program import get_new_symbol

    specs.update({n: mb.TensorSpec(tuple(get_new_symbol() if d is None else d for d in shape),
                                   dtype=getattr(types, _MIL_DTYPES[np.dtype(dt).type]))
                  for n, (shape, dt) in tensors.items()})
    target = getattr(ct.target, TARGETS[opset])
    with Function(specs, opset_version=target) as func:
        outs = build(**{n: func.inputs[n] for n in specs})
        func.set_outputs(list(outs) if isinstance(outs, (list, tuple)) else [outs])
    prog = Program()
    prog.add_function("main", func)

    precision = ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32
    model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=target, compute_precision=precision,
                       **convert)
    model.save(str(path))
    return path


def run_program(build: Callable[..., Any], inputs: dict[str, np.ndarray], tmp_path: Path, *, opset: int = 15,
                fp16: bool = False, executor: str = "auto", **convert: Any) -> dict[str, Any]:
    """Build a program over ``inputs`` (their shapes and dtypes), save it, load it with mlupdate, predict them."""
    path = save_program(build, {n: (v.shape, v.dtype) for n, v in inputs.items()}, tmp_path / "op.mlpackage",
                        opset=opset, fp16=fp16, **convert)
    return mlupdate.load(path, executor=executor).predict(inputs)


def run_op(op: str, inputs: dict[str, np.ndarray], tmp_path: Path, *, consts: dict[str, Any] | None = None,
           opset: int = 15, fp16: bool = False, executor: str = "auto") -> Any:
    """One MIL op ``op`` on runtime ``inputs`` and constant ``consts``, end to end; its (first) output."""
    def build(**xs: Any) -> Any:
        from coremltools.converters.mil.mil import Builder as mb

        out = getattr(mb, op)(**xs, **(consts or {}), name="out")
        return out[0] if isinstance(out, (tuple, list)) else out

    result = run_program(build, inputs, tmp_path, opset=opset, fp16=fp16, executor=executor)
    return next(iter(result.values()))
