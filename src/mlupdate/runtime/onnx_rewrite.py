"""A peephole pass over an exported ONNX graph: unit axes that the example axis forces, removed again.

ND networks hold a converted image network's ``[1, C, H, W]`` blobs as ``[N, 1, C, H, W]``; the
spatial layers take ``[N, C, H, W]`` (``fold`` in :mod:`mlupdate.layers.common`), so the export
is full of ``Gather(axis=1, index 0)`` / ``Unsqueeze(axes=[1])`` pairs around element-wise ops.
Those copies and the fusions they block cost up to 2x on onnxruntime. Element-wise ops commute
with adding a unit axis, so this pass moves each ``Unsqueeze`` past them and cancels it against
the next ``Gather``. The graph computes exactly the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Element-wise ops (numpy broadcasting) that commute with an Unsqueeze of every non-constant input.
_ELEMENTWISE = {"Clip", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf",
                "HardSigmoid", "Softplus", "Elu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Identity"}


def simplify(model: Any) -> Any:
    """Apply the pass to an ``onnx.ModelProto`` in place until nothing changes; returns it."""
    while _commute_once(model.graph) or _cancel_once(model.graph):
        pass
    _drop_unused_constants(model.graph)
    return model


def _drop_unused_constants(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def _index(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, np.ndarray]]:
    from onnx import numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return producer, consumers, consts


def _is_unsqueeze1(node: Any, consts: dict[str, np.ndarray]) -> bool:
    return (node is not None and node.op_type == "Unsqueeze" and len(node.input) == 2
            and node.input[1] in consts and consts[node.input[1]].tolist() in ([1], 1))


def _commute_once(graph: Any) -> bool:
    """Rewrite one ``op(Unsqueeze(x), c...)`` as ``Unsqueeze(op(x, c...))``."""
    producer, consumers, consts = _index(graph)
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type not in _ELEMENTWISE or node.output[0] in outputs:
            continue
        ups = [producer.get(i) for i in node.input]
        moved = [i for i, u in zip(node.input, ups, strict=True) if _is_unsqueeze1(u, consts)]
        others = [i for i, u in zip(node.input, ups, strict=True) if i and not _is_unsqueeze1(u, consts)]
        if not moved or any(i not in consts or consts[i].ndim > 0 for i in others if i):
            continue  # only scalar constants besides the unsqueezed inputs keep broadcasting unchanged
        if any(len(consumers.get(i, [])) != 1 for i in moved):
            continue
        for pos, name in enumerate(node.input):
            if name in moved:
                node.input[pos] = producer[name].input[0]
        axes_name = producer[moved[0]].input[1]
        for name in moved:
            graph.node.remove(producer[name])
        inner = node.output[0] + "__squeezed"
        out = node.output[0]
        node.output[0] = inner
        _insert_after(graph, node, _make("Unsqueeze", [inner, axes_name], [out]))
        return True
    return False


def _cancel_once(graph: Any) -> bool:
    """Replace one ``Gather(Unsqueeze(x), 0, axis=1)`` by ``x``."""
    producer, consumers, consts = _index(graph)
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type != "Gather" or node.output[0] in outputs:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if axis != 1 or node.input[1] not in consts or consts[node.input[1]].shape != () \
                or int(consts[node.input[1]]) != 0:
            continue
        up = producer.get(node.input[0])
        if not _is_unsqueeze1(up, consts):
            continue
        for user in consumers.get(node.output[0], []):
            for pos, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[pos] = up.input[0]
        graph.node.remove(node)
        if not [u for u in consumers.get(up.output[0], []) if u is not node] and up.output[0] not in outputs:
            graph.node.remove(up)
        return True
    return False


def _make(op: str, inputs: list[str], outputs: list[str]) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs)


def _insert_after(graph: Any, node: Any, new: Any) -> None:
    nodes = list(graph.node)
    at = nodes.index(node) + 1
    graph.node.insert(at, new)
