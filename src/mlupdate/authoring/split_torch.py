"""Split a PyTorch module at its first updatable layer: a frozen feature extractor and a trainable head.

Apple's recommended updatable layout (coremltools' guide "Comparing ML Programs and Neural Networks",
On-device update) is a pipeline of an ML Program feature extractor and a small neural network holding
only the updatable layers. This module finds the cut with ``torch.fx``: submodules that contain no
updatable layer are kept whole (leaves), so backbones whose own code does not trace symbolically still
split. The head must depend on the extractor through one tensor only (the first updatable layer's
input); anything else (a skip connection around the cut, a second use of the input) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx

from mlupdate.errors import ConversionError


class _Tracer(fx.Tracer):
    """Traces into a submodule only when an updatable layer lies inside it."""

    def __init__(self, updatable: Sequence[str]) -> None:
        super().__init__()
        self._updatable = tuple(updatable)

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        q = module_qualified_name
        if q in self._updatable:
            return True
        return not any(u.startswith(q + ".") for u in self._updatable)


def split_module(module: torch.nn.Module, updatable: Sequence[str]) -> tuple[fx.GraphModule, fx.GraphModule, str]:
    """Cut ``module`` before the first (in execution order) of the ``updatable`` submodules.

    Args:
        module: The whole network (one tensor in, one tensor out).
        updatable: Qualified names of the updatable ``nn.Linear``/``nn.Conv2d`` modules.

    Returns:
        ``(extractor, head, first)``: the extractor maps the module's input to the first updatable
        layer's input; the head maps that tensor to the module's output and keeps the submodules'
        qualified names (so ``"dense_5"`` is still ``"dense_5"``); ``first`` names the cut layer.

    Raises:
        ConversionError: The module does not trace, takes several inputs, or uses values from before the
            cut after it.
    """
    try:
        graph = _Tracer(updatable).trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises anything on untraceable code; say where to fix it
        raise ConversionError(
            f"Could not split {type(module).__name__} at its first updatable layer: torch.fx cannot trace the code "
            f"around the updatable layers ({type(exc).__name__}: {exc}). Put the backbone in a submodule of its own "
            "and keep data-dependent control flow out of the forward that calls the updatable layers, or use "
            "format='mlmodel'."
        ) from None
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ConversionError(f"{type(module).__name__} takes {len(inputs)} inputs; splitting it into an extractor "
                              "and an updatable head needs exactly one input tensor.")
    cut_layer = next((n for n in nodes if n.op == "call_module" and n.target in updatable), None)
    if cut_layer is None:
        raise ConversionError(f"None of the updatable layers {list(updatable)} is called in "
                              f"{type(module).__name__}.forward; name layers the forward uses.")
    if len(cut_layer.args) != 1 or not isinstance(cut_layer.args[0], fx.Node):
        raise ConversionError(f"The first updatable layer '{cut_layer.target}' is called with several arguments; "
                              "it must take the features as its only input.")
    cut = cut_layer.args[0]
    before = _ancestors(cut)
    if cut.op == "placeholder":
        raise ConversionError(f"The first updatable layer '{cut_layer.target}' takes the model's input directly: "
                              "there is no feature extractor to convert. Use format='mlmodel'.")
    for n in nodes:
        if n in before or n.op == "placeholder":
            continue
        stray = [a for a in n.all_input_nodes if a in before and a is not cut]
        if stray:
            raise ConversionError(
                f"'{n.name}' after the cut at '{cut_layer.target}' also uses '{stray[0].name}', computed before "
                "it; the updatable head may take only the first updatable layer's input. Move that computation "
                "after the cut, or use format='mlmodel'."
            )
    return _extractor(module, graph, before, cut), _head(module, graph, before, cut), str(cut_layer.target)


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return seen


def _extractor(root: torch.nn.Module, graph: fx.Graph, before: set[fx.Node], cut: fx.Node) -> fx.GraphModule:
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in graph.nodes:
        if n in before:
            env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[cut])
    return fx.GraphModule(root, g)


def _head(root: torch.nn.Module, graph: fx.Graph, before: set[fx.Node], cut: fx.Node) -> fx.GraphModule:
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut: g.placeholder("features")}
    for n in graph.nodes:
        if n in before or n.op == "placeholder":
            continue
        env[n] = g.node_copy(n, lambda a: env[a])
    return fx.GraphModule(root, g)
