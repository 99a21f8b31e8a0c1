"""Torch wrappers that give a compiled ML Program function the executors' interface.

:mod:`mlupdate.runtime.executors` runs and exports modules that take positional tensors and return a tuple,
with ``output_names``. A stateful function also takes its states (after the inputs) and returns their values
after the call (after the outputs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.ops.state import StateRef


class ProgramGraph(nn.Module):
    """A stateless program function: ``forward(*inputs) -> tuple(outputs)``."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.program = module
        self.output_names = tuple(module.output_names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.program(*args))


class StatefulGraph(nn.Module):
    """A stateful program function: ``forward(*inputs, *states) -> (*outputs, *states after the call)``."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.program = module
        self.output_names = tuple(module.output_names) + tuple(module.states)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [n for n in self.program.input_names if n not in self.program.states]
        given = dict(zip(names, args[:len(names)], strict=True))
        refs = {n: StateRef(v) for n, v in zip(self.program.states, args[len(names):], strict=True)}
        outs = self.program(*[refs[n] if n in refs else given[n] for n in self.program.input_names])
        return tuple(outs) + tuple(refs[n].value for n in self.program.states)
