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

#: Element-wise ops (numpy broadcasting) that commute with an Unsqueeze of every non-constant input.
_ELEMENTWISE = {"Clip", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf",
                "HardSigmoid", "Softplus", "Elu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Identity"}


def simplify(model: Any) -> Any:
    """Apply the pass to an ``onnx.ModelProto`` in place until nothing changes; returns it."""
    _Pass(model.graph).run()
    _drop_unused_constants(model.graph)
    return model


def _drop_unused_constants(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
    graph.ClearField("node")
    graph.node.extend(kept)


class _Pass:
    """The rewrite over a node list with producer/consumer maps kept up to date (one index build)."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.nodes = list(graph.node)
        self.outputs = {o.name for o in graph.output}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.removed: set[int] = set()
        self.after: dict[int, list[Any]] = {}

    def run(self) -> None:
        changed = True
        while changed:
            changed = False
            for node in list(self.nodes):
                if id(node) in self.removed:
                    continue
                if node.op_type in _ELEMENTWISE:
                    changed |= self._commute(node)
                elif node.op_type == "Gather":
                    changed |= self._cancel(node)
            self.nodes = self._flattened()
        self.graph.ClearField("node")
        self.graph.node.extend(self.nodes)

    def _flattened(self) -> list[Any]:
        out: list[Any] = []

        def emit(n: Any) -> None:
            if id(n) not in self.removed:
                out.append(n)
            for extra in self.after.pop(id(n), []):
                emit(extra)

        for n in self.nodes:
            emit(n)
        return out

    def _unsqueeze1(self, name: str) -> Any:
        node = self.producer.get(name)
        if (node is not None and id(node) not in self.removed and node.op_type == "Unsqueeze"
                and len(node.input) == 2 and node.input[1] in self.consts
                and self.consts[node.input[1]].tolist() in ([1], 1)):
            return node
        return None

    def _commute(self, node: Any) -> bool:
        """Rewrite ``op(Unsqueeze(x), c...)`` as ``Unsqueeze(op(x, c...))``."""
        if node.output[0] in self.outputs:
            return False
        ups = {i: self._unsqueeze1(i) for i in node.input if i}
        moved = [i for i, u in ups.items() if u is not None]
        others = [i for i, u in ups.items() if u is None]
        if not moved or any(i not in self.consts or self.consts[i].ndim > 0 for i in others):
            return False  # only scalar constants besides the unsqueezed inputs keep broadcasting unchanged
        if any(len(self.consumers.get(i, [])) != 1 for i in moved):
            return False
        axes = ups[moved[0]].input[1]
        for pos, name in enumerate(node.input):
            if name in moved:
                up = ups[name]
                node.input[pos] = up.input[0]
                self.removed.add(id(up))
                self.consumers[up.input[0]] = [c for c in self.consumers[up.input[0]] if c is not up] + [node]
                self.consumers.pop(name, None)
                self.producer.pop(name, None)
        out, inner = node.output[0], node.output[0] + "__squeezed"
        node.output[0] = inner
        new = _make("Unsqueeze", [inner, axes], [out])
        self.producer[inner], self.producer[out] = node, new
        self.consumers[inner] = [new]
        self.consumers.setdefault(axes, []).append(new)
        self.after.setdefault(id(node), []).append(new)
        return True

    def _cancel(self, node: Any) -> bool:
        """Replace ``Gather(Unsqueeze(x), 0, axis=1)`` by ``x``."""
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        index = self.consts.get(node.input[1])
        if node.output[0] in self.outputs or axis != 1 or index is None or index.shape != () or int(index) != 0:
            return False
        up = self._unsqueeze1(node.input[0])
        if up is None:
            return False
        source = up.input[0]
        for user in self.consumers.pop(node.output[0], []):
            for pos, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[pos] = source
            self.consumers.setdefault(source, []).append(user)
        self.removed.add(id(node))
        left = [c for c in self.consumers.get(up.output[0], []) if c is not node]
        self.consumers[up.output[0]] = left
        if not left and up.output[0] not in self.outputs:
            self.removed.add(id(up))
            self.consumers[source] = [c for c in self.consumers.get(source, []) if c is not up]
        return True


def _make(op: str, inputs: list[str], outputs: list[str]) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs)
