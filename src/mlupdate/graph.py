"""A neural network's layer list compiled to one torch module, and the frozen/trainable split.

``Graph`` executes nodes in spec order over a dictionary of blobs. It is the single source of
truth: the ONNX executor is exported from it and training runs on (a subgraph of) it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mlupdate.errors import Error, LayerError, SpecError
from mlupdate.layers import BuildContext, build_layer
from mlupdate.layers.common import check_size


@dataclass(frozen=True)
class Node:
    """One compiled layer: its spec name, kind, input and output blobs, and updatable flag."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    key: str
    updatable: bool = False
    index: int = -1


class Preprocess(nn.Module):
    """Core ML's image preprocessing: ``y = channelScale * x + bias[c]`` or ``x - meanImage``."""

    def __init__(self, scale: float, bias: Sequence[float] | None, mean: Sequence[float] | None,
                 shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("bias", torch.tensor(list(bias or [0.0] * shape[0]), dtype=torch.float32)
                             .reshape(-1, 1, 1))
        self.has_mean = mean is not None
        if mean is not None:
            if len(mean) != shape[0] * shape[1] * shape[2]:
                raise SpecError(f"The image preprocessing's meanImage holds {len(mean)} values but the image is "
                                f"{shape[0]}x{shape[1]}x{shape[2]}; store one mean per pixel and channel "
                                f"({shape[0] * shape[1] * shape[2]} values) or use a scaler instead.")
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_mean:
            return x - self.mean
        return x * self.scale + self.bias


class Graph(nn.Module):
    """Runs compiled nodes in order; ``forward(*inputs) -> tuple(outputs)``.

    Args:
        nodes: Nodes in execution order.
        modules: Torch modules keyed by ``Node.key`` (shared between a graph and its subgraphs).
        inputs: Names of the blobs fed in, in ``forward`` argument order.
        outputs: Names of the blobs returned, in order.
        preprocess: Modules applied to some inputs first (image preprocessing), by input name.
    """

    def __init__(self, nodes: Sequence[Node], modules: nn.ModuleDict, inputs: Sequence[str],
                 outputs: Sequence[str], preprocess: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.layers = modules
        self._pre_names = {k: f"p{i}" for i, k in enumerate(preprocess or {})}
        self.preprocess = nn.ModuleDict({self._pre_names[k]: v for k, v in (preprocess or {}).items()})
        self.input_names = tuple(inputs)
        self.output_names = tuple(outputs)
        self.all_nodes = tuple(nodes)  # every compiled layer, also those no output of this graph needs
        self.nodes = tuple(_prune(nodes, self.input_names, self.output_names))

    def preprocessed(self, name: str) -> bool:
        """Whether the input ``name`` passes through preprocessing (an image's scale and bias) first."""
        return name in self._pre_names

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[str, torch.Tensor] = {}
        for name, value in zip(self.input_names, args, strict=True):
            pre = self._pre_names.get(name)
            env[name] = self.preprocess[pre](value) if pre else value
        n = args[0].shape[0] if args else 1
        for node in self.nodes:
            run_node(node, self.layers[node.key], env, n)
        return tuple(env[o] for o in self.output_names)

    def subgraph(self, inputs: Sequence[str], outputs: Sequence[str], with_preprocess: bool = True) -> Graph:
        """A graph over the same modules computing ``outputs`` from ``inputs``."""
        pre = {n: self.preprocess[k] for n, k in self._pre_names.items() if with_preprocess and n in inputs}
        return Graph(self.all_nodes, self.layers, inputs, outputs, pre)

    def node(self, name: str) -> Node:
        """The node of the layer called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def module(self, name: str) -> nn.Module:
        """The torch module of the layer called ``name``."""
        return self.layers[self.node(name).key]

    def frozen_boundary(self, trainable: Iterable[str]) -> tuple[list[str], list[Node]]:
        """Split at the trainable layers.

        Args:
            trainable: Names of the layers whose weights change.

        Returns:
            ``(boundary, rest)``: the blobs that no trainable layer influences but that the
            trainable part reads (graph inputs included), and the nodes that must run in
            autograd (every node influenced by a trainable layer).
        """
        names = set(trainable)
        tainted: set[str] = set()
        rest: list[Node] = []
        for node in self.nodes:
            if node.name in names or any(i in tainted for i in node.inputs):
                tainted.update(node.outputs)
                rest.append(node)
        boundary: list[str] = []
        for node in rest:
            for i in node.inputs:
                if i not in tainted and i not in boundary:
                    boundary.append(i)
        return boundary, rest


def run_node(node: Node, module: nn.Module, env: dict[str, torch.Tensor], n: int) -> None:
    """Run one compiled layer over the blob dictionary ``env`` (updated in place).

    A module with ``scoped = True`` (control flow) reads and writes ``env`` itself. The outputs of a
    layer without inputs (constants, static fills) are held with one example and expanded to ``n``.

    Raises:
        LayerError: If the layer fails, naming it, its kind, index and input shapes.
    """
    try:
        if getattr(module, "scoped", False):
            env.update(module(env))
            return
        out = module(*[env[i] for i in node.inputs])
        outs = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        if not node.inputs:
            outs = tuple(o.expand((n, *o.shape[1:])) if o.dim() and o.shape[0] == 1 else o for o in outs)
        if len(outs) < len(node.outputs):
            raise ValueError(f"it computes {len(outs)} output(s) but the model names {len(node.outputs)}")
        if any(o.dim() == 0 or o.shape[0] != n for o in outs):
            raise ValueError("its parameters reach past the input's rank (it would mix the examples of a batch)")
        for o in outs:  # checked before anything reads the (possibly broadcast, not yet allocated) result
            check_size(o.shape[1:], "its output")
        env.update(zip(node.outputs, outs, strict=False))
    except Error:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside a layer is reported with the layer
        shapes = ", ".join(f"{i}: {[int(d) for d in env[i].shape[1:]]}" for i in node.inputs if i in env)
        raise LayerError(
            f"Layer '{node.name}' ({node.kind}, layer {node.index} of the network) failed on inputs "
            f"[{shapes}] (shapes per example): {exc}. The model's layer parameters do not fit these inputs; "
            "check the input shapes against the model's description, or fix the layer."
        ) from exc


def _prune(nodes: Sequence[Node], inputs: Sequence[str], outputs: Sequence[str]) -> list[Node]:
    """Keep only the nodes needed for ``outputs``, stopping at ``inputs``."""
    needed = set(outputs)
    keep: list[Node] = []
    given = set(inputs)
    for node in reversed(nodes):
        if any(o in needed and o not in given for o in node.outputs):
            keep.append(node)
            needed.update(node.inputs)
    keep.reverse()
    missing = [b for b in needed if b not in given and not any(b in n.outputs for n in keep)]
    if missing:
        raise SpecError(f"Blob(s) {missing} are needed but no layer or input produces them.")
    return keep


def compile_layers(layers: Sequence[Any], available: Iterable[str], nd: bool) -> tuple[list[Node], nn.ModuleDict]:
    """Compile a ``NeuralNetwork``'s layers, checking that every blob read is produced earlier.

    Args:
        layers: The ``NeuralNetworkLayer`` messages, in spec order.
        available: Blob names available before the first layer (the model inputs).
        nd: Whether the network uses ND blobs (exact array mapping).

    Raises:
        SpecError: If a layer reads a blob that no input or earlier layer produces, or names collide.
        UnsupportedLayerError: If a layer kind is not supported.
    """
    produced = set(available)
    nodes: list[Node] = []
    modules = nn.ModuleDict()
    seen_names: set[str] = set()
    for i, layer in enumerate(layers):
        kind = layer.WhichOneof("layer") or "<none>"
        for blob in layer.input:
            if blob not in produced:
                raise SpecError(
                    f"Layer '{layer.name}' ({kind}) reads blob '{blob}', which no input or earlier layer "
                    "produces. Fix the layer's input name or the layer order in the model."
                )
        if layer.name in seen_names:
            raise SpecError(f"Two layers are named '{layer.name}'; layer names must be unique. Rename one.")
        seen_names.add(layer.name)
        key = f"l{i}"
        try:
            module = build_layer(layer, BuildContext(nd=nd, available=frozenset(produced), inputs=tuple(layer.input),
                                                     compile_layers=compile_layers, run_node=run_node))
        except Error:
            raise
        except Exception as exc:  # noqa: BLE001 - parameters no builder check anticipated are still the file's fault
            raise SpecError(
                f"Layer '{layer.name}' ({kind}, layer {i} of the network) has parameters mlupdate cannot use: {exc}. "
                "The model file is inconsistent; re-export it from its source framework."
            ) from exc
        modules[key] = module
        reads = tuple(b for b in getattr(module, "reads", ()) if b not in layer.input)
        writes = tuple(b for b in getattr(module, "writes", ()) if b not in layer.output)
        nodes.append(Node(layer.name, kind, (*layer.input, *reads), (*layer.output, *writes), key,
                          bool(layer.isUpdatable), i))
        produced.update(layer.output)
        produced.update(writes)
    return nodes, modules
