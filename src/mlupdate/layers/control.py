"""Control flow: nested networks run on a condition or in a loop.

branch, loop, loopBreak, loopContinue.

A ``branch`` runs its ``ifBranch`` or its ``elseBranch`` network on the value of its one input; a
``loop`` runs its ``bodyNetwork`` a number of times (``maxLoopIterations``, or the value of its one
input), while its ``conditionNetwork`` produces a true ``conditionVar``, or both. ``loopBreak`` and
``loopContinue`` end the loop or the current iteration of the innermost loop whose body holds them,
branches nested in that body included.

The nested networks share the enclosing scope (NeuralNetwork.proto: blobs produced by the condition
or the body network are visible in the overall network): they read any blob produced before the
layer and their layers may overwrite one (``copy``). Which blobs layers after the control-flow layer
may read follows Core ML's validator: after a branch, the blobs both branches produce and the earlier
blobs either branch overwrites (with no else branch: only the overwritten ones); after a loop without
a condition network, every blob its body produces; after a loop with one, the condition network's
blobs and the body's blobs the condition network also sees (earlier blobs, or its own).

A condition is one value per example (Core ML: a length-1 tensor), true when its magnitude exceeds
1e-6, so these layers set ``per_example`` (the network runs with ``N == 1``) and ``exportable =
False`` (the network runs on torch). A loop still running after :data:`MAX_ITERATIONS` iterations
(a while loop whose condition stays true, or a huge iteration count) stops with an error instead of
hanging the prediction.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register

#: A condition is true when its magnitude exceeds this (coremltools' ``add_branch`` documentation).
THRESHOLD = 1e-6
#: Iterations after which a loop is stopped with an error (Core ML would keep running it).
MAX_ITERATIONS = 100_000

# loops whose body is being compiled around the layer now being built (loopBreak/loopContinue need one)
_LOOP_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("mlupdate_loop_depth", default=0)


class _LoopSignal(BaseException):
    """Raised by loopBreak/loopContinue and caught by the innermost running loop.

    A ``BaseException`` so that the graph's layer-error wrapping (``except Exception``) lets it pass
    through the nested networks (and branches) between the layer and its loop.
    """


class _Break(_LoopSignal):
    """End the loop."""


class _Continue(_LoopSignal):
    """End the current iteration."""


class Nested(nn.Module):
    """A compiled nested ``NeuralNetwork`` that runs over the enclosing scope's blob dictionary."""

    def __init__(self, nodes: Sequence[Any], modules: nn.ModuleDict, run_node: Callable[..., Any]) -> None:
        super().__init__()
        self.nodes = tuple(nodes)
        self.layers = modules
        self._run_node = run_node

    def run(self, env: dict[str, torch.Tensor], n: int) -> None:
        """Run every layer in order, updating ``env`` in place."""
        for node in self.nodes:
            self._run_node(node, self.layers[node.key], env, n)

    def produced(self) -> list[str]:
        """Blobs the network writes (nested control-flow writes included), in order."""
        return _unique(o for node in self.nodes for o in node.outputs)

    def reads_from(self, outer: Iterable[str]) -> list[str]:
        """Blobs of ``outer`` the network reads (nested control-flow reads included), in order."""
        known = set(outer)
        return _unique(i for node in self.nodes for i in node.inputs if i in known)


class _Scoped(nn.Module):
    """Base of the control-flow modules: called with the blob dictionary, returns what they write."""

    scoped = True
    per_example = True
    exportable = False

    def __init__(self, reads: Sequence[str], writes: Sequence[str]) -> None:
        super().__init__()
        self.reads = tuple(reads)
        self.writes = tuple(writes)

    def _visible(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {b: env[b] for b in self.writes if b in env}


class Branch(_Scoped):
    """``branch``: run ``if_net`` when the condition blob is true, else ``else_net``."""

    def __init__(self, condition: str, if_net: Nested, else_net: Nested, reads: Sequence[str],
                 writes: Sequence[str]) -> None:
        super().__init__(reads, writes)
        self.condition = condition
        self.if_net = if_net
        self.else_net = else_net

    def forward(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net = self.if_net if truth(env[self.condition], "branch condition") else self.else_net
        net.run(env, _examples(env))
        return self._visible(env)


class Loop(_Scoped):
    """``loop``: Core ML's for loop, while loop, or while loop with an iteration bound.

    Args:
        count: Blob holding the iteration bound (the layer's input), or None.
        max_iterations: ``maxLoopIterations``; used when there is no ``count`` blob (0: no bound).
        condition_var: Blob the condition network produces, or None without a condition network.
        condition: The compiled condition network, or None.
        body: The compiled body network.
        reads: Outer blobs the nested networks read.
        writes: Blobs visible after the loop.
    """

    def __init__(self, count: str | None, max_iterations: int, condition_var: str | None,
                 condition: Nested | None, body: Nested, reads: Sequence[str], writes: Sequence[str]) -> None:
        super().__init__(reads, writes)
        self.count = count
        self.max_iterations = max_iterations
        self.condition_var = condition_var
        self.condition = condition
        self.body = body

    def _bound(self, env: dict[str, torch.Tensor]) -> int | None:
        if self.count is not None:
            value = _scalar(env[self.count], "loop iteration count")
            return max(int(value), 0)
        if self.max_iterations > 0 or self.condition is None:
            return self.max_iterations
        return None

    def _go_on(self, env: dict[str, torch.Tensor], n: int) -> bool:
        if self.condition is None:
            return True
        self.condition.run(env, n)
        if self.condition_var not in env:
            raise ValueError(f"the condition network did not produce the condition blob '{self.condition_var}'")
        return truth(env[self.condition_var], "loop condition")

    def forward(self, env: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n = _examples(env)
        bound = self._bound(env)
        done = 0
        go = self._go_on(env, n)
        while go and (bound is None or done < bound):
            if done >= MAX_ITERATIONS:
                raise ValueError(f"the loop ran {MAX_ITERATIONS} iterations and would run more (iteration bound: "
                                 f"{'none' if bound is None else bound}); mlupdate stops loops there")
            try:
                self.body.run(env, n)
            except _Break:
                break
            except _Continue:
                pass
            done += 1
            go = self._go_on(env, n)
        return self._visible(env)


class Signal(nn.Module):
    """``loopBreak`` / ``loopContinue``: raise the signal its loop catches."""

    exportable = False

    def __init__(self, signal: type[_LoopSignal]) -> None:
        super().__init__()
        self.signal = signal

    def forward(self) -> NoReturn:
        raise self.signal()


def truth(x: torch.Tensor, what: str) -> bool:
    """Whether a condition blob is true: its one value per example has magnitude above 1e-6.

    Raises:
        ValueError: If the blob holds more than one value per example.
    """
    return abs(_scalar(x, what)) > THRESHOLD


def _scalar(x: torch.Tensor, what: str) -> float:
    if x.numel() != 1:
        raise ValueError(f"the {what} must be one value (a length-1 tensor) per example, not shape "
                         f"{list(x.shape[1:])} for {x.shape[0] if x.dim() else 1} example(s)")
    return float(x.reshape(-1)[0])


def _examples(env: dict[str, torch.Tensor]) -> int:
    for value in env.values():
        return int(value.shape[0]) if value.dim() else 1
    return 1


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _compile(net: Any, ctx: BuildContext, available: Iterable[str], depth: int) -> Nested:
    """Compile a nested network with ``depth`` enclosing loop bodies (with the graph's compiler, from ``ctx``)."""
    if ctx.compile_layers is None or ctx.run_node is None:
        raise SpecError(f"Layer '{ctx.name}' holds a nested network, which compiles only inside a whole network.")
    token = _LOOP_DEPTH.set(depth)
    try:
        nodes, modules = ctx.compile_layers(net.layers, frozenset(available), ctx.nd)
    finally:
        _LOOP_DEPTH.reset(token)
    return Nested(nodes, modules, ctx.run_node)


def _check_inputs(ctx: BuildContext, kind: str, low: int, high: int) -> None:
    if not low <= len(ctx.inputs) <= high:
        want = str(low) if low == high else f"{low} or {high}"
        raise SpecError(f"{kind} layer '{ctx.name}' has {len(ctx.inputs)} inputs; it takes {want}. Fix the layer.")


@register("branch")
def _branch(p: Any, ctx: BuildContext) -> nn.Module:
    _check_inputs(ctx, "Branch", 1, 1)
    if not p.ifBranch.layers:
        raise SpecError(f"Branch layer '{ctx.name}' has an empty ifBranch network; give it at least one layer.")
    depth = _LOOP_DEPTH.get()
    if_net = _compile(p.ifBranch, ctx, ctx.available, depth)
    else_net = _compile(p.elseBranch, ctx, ctx.available, depth)
    made_if, made_else = if_net.produced(), else_net.produced()
    both = set(made_if) & set(made_else)
    writes = [b for b in _unique([*made_if, *made_else]) if b in both or b in ctx.available]
    reads = _unique([*if_net.reads_from(ctx.available), *else_net.reads_from(ctx.available)])
    return Branch(ctx.inputs[0], if_net, else_net, reads, writes)


@register("loop")
def _loop(p: Any, ctx: BuildContext) -> nn.Module:
    _check_inputs(ctx, "Loop", 0, 1)
    has_condition = bool(p.conditionNetwork.layers)
    if not p.bodyNetwork.layers:
        raise SpecError(f"Loop layer '{ctx.name}' has an empty bodyNetwork; give it at least one layer.")
    if has_condition != bool(p.conditionVar):
        raise SpecError(f"Loop layer '{ctx.name}' must have both a conditionNetwork and a conditionVar, or neither.")
    if not has_condition and not ctx.inputs and p.maxLoopIterations == 0:
        raise SpecError(f"Loop layer '{ctx.name}' has no input, no conditionNetwork and maxLoopIterations 0; "
                        "set maxLoopIterations, or give it an iteration-count input or a condition network.")
    depth = _LOOP_DEPTH.get()
    condition = None
    made_cond: list[str] = []
    if has_condition:
        condition = _compile(p.conditionNetwork, ctx, ctx.available, depth)
        made_cond = condition.produced()
        if p.conditionVar not in made_cond:
            raise SpecError(f"Loop layer '{ctx.name}' has conditionVar '{p.conditionVar}', which its "
                            "conditionNetwork does not produce. Name a blob the condition network writes.")
    seen = set(ctx.available) | set(made_cond)
    body = _compile(p.bodyNetwork, ctx, seen, depth + 1)
    made_body = body.produced()
    writes = _unique([*made_cond, *(b for b in made_body if not has_condition or b in seen)])
    reads = _unique([*(condition.reads_from(ctx.available) if condition else []), *body.reads_from(ctx.available)])
    count = ctx.inputs[0] if ctx.inputs else None
    return Loop(count, int(p.maxLoopIterations), p.conditionVar or None, condition, body, reads, writes)


def _signal(kind: str, signal: type[_LoopSignal], ctx: BuildContext) -> nn.Module:
    _check_inputs(ctx, kind, 0, 0)
    if _LOOP_DEPTH.get() == 0:
        raise SpecError(f"{kind} layer '{ctx.name}' is not inside the bodyNetwork of a loop layer; Core ML "
                        "allows it only there. Move it into a loop body or remove it.")
    return Signal(signal)


@register("loopBreak")
def _loop_break(p: Any, ctx: BuildContext) -> nn.Module:
    return _signal("Loop break", _Break, ctx)


@register("loopContinue")
def _loop_continue(p: Any, ctx: BuildContext) -> nn.Module:
    return _signal("Loop continue", _Continue, ctx)
