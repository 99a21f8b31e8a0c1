"""read_state, write_state, coreml_update_state (MIL ``iOS18/states.py``, ``coreml_dialect/ops.py``).

A state input of the program is held as a :class:`StateRef` (its value, replaced by each write); the compiled
program's runner (:mod:`mlupdate.runtime.program_graph`) passes the states in and reads them back after a call.
``coreml_update_state`` (coremltools' dialect op, saved as ``write_state`` then ``read_state``) writes the value
and returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mlupdate.errors import LayerError
from mlupdate.ops import OpContext, register


@dataclass
class StateRef:
    """A state of a stateful program: a value replaced by every write."""

    value: torch.Tensor


def _state(ctx: OpContext, value: Any) -> StateRef:
    if not isinstance(value, StateRef):
        raise LayerError(f"Op '{ctx.name}' ({ctx.op_type}) needs a state input (a function input of state type).")
    return value


@register("read_state", since=18)
def read_state(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """The state's current value."""
    return _state(ctx, inputs["input"]).value


def _write(ctx: OpContext, ref: StateRef, value: torch.Tensor) -> torch.Tensor:
    if tuple(value.shape) != tuple(ref.value.shape):
        raise LayerError(f"Op '{ctx.name}' ({ctx.op_type}) writes shape {list(value.shape)} to a state of shape "
                         f"{list(ref.value.shape)}.")
    ref.value = value.to(ref.value.dtype)
    return ref.value


@register("write_state", since=18)
def write_state(ctx: OpContext, inputs: dict[str, Any]) -> tuple[()]:
    """Replace the state's value with ``data`` (no outputs)."""
    _write(ctx, _state(ctx, inputs["input"]), inputs["data"])
    return ()


@register("coreml_update_state", since=18)
def coreml_update_state(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Replace the state's value with ``value`` and return it."""
    return _write(ctx, _state(ctx, inputs["state"]), inputs["value"])
