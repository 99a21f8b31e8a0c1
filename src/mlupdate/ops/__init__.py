"""MIL ops (the operations of ML Programs) compiled to PyTorch.

One registry, keyed by the op's name in MIL.proto (``conv``, ``reduce_mean``, ``constexpr_lut_to_dense``, ...)
and the opset it first appears in with a given meaning (iOS15 = ``CoreML5`` ... iOS18 = ``CoreML8``). It sits
beside the neural-network layer registry (:mod:`mlupdate.layers`), not inside it; the two share kernels where
the semantics are the same.

A kernel is a plain function ``kernel(ctx, inputs) -> Tensor | tuple``:

* ``inputs`` maps each of the op's input parameters to a torch tensor (variadic parameters, such as
  ``concat``'s ``values``, to a list of tensors; MIL lists made by ``make_list`` to a Python list). Inputs the
  program leaves out (optional parameters) are absent: the kernel applies the default the op definition
  documents.
* ``ctx`` (:class:`OpContext`) holds what is known when the program is compiled: the values of the inputs
  that are constants (as numpy arrays, for parameters that set shapes, axes or modes), the op's attributes,
  the declared output types, the opset, and the op's nested blocks (control flow).

Tensors are held with exactly the shapes the program declares: ML Programs carry their batch axis
themselves, so no examples axis is added. Kernels are dtype-agnostic: they compute in the dtype of their
inputs, and the compiler takes care of the program's declared types (fp16 included).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlupdate.errors import UnsupportedModelError

#: MIL opset names of ``Function.opset`` and the iOS release that introduced each.
OPSETS: dict[str, int] = {"CoreML5": 15, "CoreML6": 16, "CoreML7": 17, "CoreML8": 18}

#: The op-family modules of this package, imported when the registry is first used.
FAMILIES: tuple[str, ...] = (
    "activation",
    "elementwise",
    "reduction",
    "linear",
    "conv",
    "pool",
    "normalization",
    "random",
    "tensor",
    "shape",
    "gather",
    "resize",
    "recurrent",
    "attention",
    "quantization",
    "constexpr",
    "control",
    "state",
    "classify",
)


@dataclass(frozen=True)
class OpContext:
    """What a kernel may know about its op besides the input tensors.

    Attributes:
        op_type: The MIL op name (``conv``).
        name: The op's name (its ``name`` attribute, else its first output's name), for messages.
        opset: The iOS release of the program's opset (15 to 18).
        consts: Input parameter to its value, for inputs that are compile-time constants (numpy arrays, or
            lists of them for variadic parameters).
        attrs: The op's attributes other than ``name`` (decoded to numpy / Python values).
        out_types: The declared output types, one ``(dtype name, shape)`` per output; a shape entry is None
            where the dimension is symbolic.
        blocks: The op's nested blocks, compiled (``cond``, ``while_loop``): each a callable taking the
            block's inputs and returning its outputs.
        dynamic: The input parameters computed at run time.
    """

    op_type: str
    name: str = ""
    opset: int = 15
    consts: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)
    out_types: tuple[tuple[str, tuple[int | None, ...] | None], ...] = ()
    blocks: tuple[Callable[..., Any], ...] = ()
    dynamic: frozenset[str] = frozenset()

    def const(self, param: str, default: Any = None) -> Any:
        """The compile-time value of input ``param``; ``default`` when the input is absent.

        Raises:
            UnsupportedModelError: When the input is present but computed at run time.
        """
        if param in self.consts:
            return self.consts[param]
        if param in self.dynamic:
            raise UnsupportedModelError(
                f"Op '{self.name}' ({self.op_type}) computes its input '{param}' at run time; mlupdate needs it "
                "to be a constant. Fold it to a constant before saving the model (coremltools' const_elimination "
                "pass)."
            )
        return default


Kernel = Callable[[OpContext, dict[str, Any]], Any]

#: Op name -> {first iOS release with this meaning: kernel}.
OPS: dict[str, dict[int, Kernel]] = {}

#: Ops that mlupdate refuses, with the reason.
REFUSED: dict[str, str] = {}


def register(*names: str, since: int = 15) -> Callable[[Kernel], Kernel]:
    """Register a kernel for one or more MIL ops, valid from iOS release ``since`` on."""

    def deco(fn: Kernel) -> Kernel:
        for name in names:
            OPS.setdefault(name, {})[since] = fn
        return fn

    return deco


def kernel_for(op_type: str, opset: int, name: str = "") -> Kernel:
    """The kernel that runs ``op_type`` in a program of opset ``opset`` (iOS release).

    Raises:
        UnsupportedModelError: For an op mlupdate refuses or does not know.
    """
    _load_families()
    if op_type in REFUSED:
        raise UnsupportedModelError(f"Op '{name}' is a {op_type}, which mlupdate cannot run: {REFUSED[op_type]}.")
    versions = OPS.get(op_type, {})
    usable = [v for v in versions if v <= opset]
    if not usable:
        raise UnsupportedModelError(
            f"Op '{name}' is of type '{op_type}' (opset iOS{opset}), which mlupdate does not support. "
            "Open an issue with the model attached, or convert the source model with "
            "convert_to='neuralnetwork'."
        )
    return versions[max(usable)]


def supported_ops() -> list[str]:
    """Sorted names of every MIL op mlupdate runs."""
    _load_families()
    return sorted(OPS)


_loaded = False


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for family in FAMILIES:
            importlib.import_module(f"mlupdate.ops.{family}")
        _loaded = True
