"""Scoped fixes to coremltools' PyTorch frontend for the torch and numpy versions mlupdate runs on.

coremltools 9 is tested with torch <= 2.7 and numpy 1.x. With torch 2.13 and numpy 2, traced
graphs keep shape arithmetic such as ``bs = x.size(0); x.view(bs, -1)`` as ``aten::int`` of a
1-element tensor. coremltools folds that to a constant with ``int(x.val)``, and numpy 2 refuses to
turn a 1-element *1-D* array into a Python scalar ("only 0-dimensional arrays can be converted to
Python scalars"). The replacements below take the single element explicitly and otherwise behave
exactly like coremltools' own ``int``/``bool`` ops. They are installed only for the duration of one
conversion (``with frontend_fixes(): ...``) and the original functions are restored afterwards, so
other users of coremltools in the process are unaffected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_LOCK = threading.RLock()


def _scalar(val: Any, dtype: type) -> Any:
    arr = np.asarray(val)
    if arr.size != 1:
        raise ValueError("input to cast must be either a scalar or a length 1 tensor")
    return dtype(arr.reshape(()).item())


def _make_cast(dtype: type, dtype_name: str) -> Callable[[Any, Any], None]:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    def cast(context: Any, node: Any) -> None:
        x = _get_inputs(context, node, expected=1)[0]
        if not (len(x.shape) == 0 or all(d == 1 for d in x.shape)):
            raise ValueError("input to cast must be either a scalar or a length 1 tensor")
        if x.can_be_folded_to_const():
            res = mb.const(val=_scalar(x.val, dtype), name=node.name)
        elif len(x.shape) > 0:
            res = mb.cast(x=mb.squeeze(x=x, name=node.name + "_item"), dtype=dtype_name, name=node.name)
        else:
            res = mb.cast(x=x, dtype=dtype_name, name=node.name)
        context.add(res, node.name)

    cast.__name__ = dtype_name
    return cast


@contextmanager
def frontend_fixes() -> Iterator[None]:
    """Install the fixed ``int``/``bool`` torch ops in coremltools' registry, restoring them on exit."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    mapping = _TORCH_OPS_REGISTRY.name_to_func_mapping
    fixes = {"int": _make_cast(int, "int32"), "bool": _make_cast(bool, "bool")}
    with _LOCK:
        saved = {name: mapping.get(name) for name in fixes}
        try:
            for name, func in fixes.items():
                _TORCH_OPS_REGISTRY.set_func_by_name(func, name)
            yield
        finally:
            for name, func in saved.items():
                if func is None:
                    mapping.pop(name, None)
                else:
                    _TORCH_OPS_REGISTRY.set_func_by_name(func, name)
