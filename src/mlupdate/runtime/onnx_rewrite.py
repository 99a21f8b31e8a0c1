"""A peephole pass over an exported ONNX graph: unit axes that the example axis forces, removed again.

ND networks hold a converted image network's ``[1, C, H, W]`` blobs as ``[N, 1, C, H, W]``; the
spatial layers take ``[N, C, H, W]`` (``fold`` in :mod:`mlupdate.layers.common`), so the export
is full of ``Gather(axis=1, index 0)`` / ``Unsqueeze(axes=[1])`` pairs around element-wise ops.
Those copies and the fusions they block cost up to 2x on onnxruntime. Element-wise ops commute
with adding a unit axis, so this pass moves each ``Unsqueeze`` past them and cancels it against
the next ``Gather``. The graph computes exactly the same values.

ML Programs hold fp16 values in float32 and round them after each op (:mod:`mlupdate.ops.precision`), which
exports as ``Cast(to=float16) -> Cast(to=float)`` pairs. A pair between a convolution and its ReLU keeps
onnxruntime from fusing them (and from keeping the blocked NCHWc layout). Rounding to fp16 is monotone,
keeps zero and the fp16 clip bounds, and is idempotent, so ``Relu``, ``MaxPool`` and ``Clip`` (with
fp16-exact bounds) commute with it and a second rounding of a rounded value is dropped: the pass moves each
pair past those ops and merges pairs that meet. Every value stays bit for bit the same.
"""

from __future__ import annotations

from typing import Any

#: Element-wise ops (numpy broadcasting) that commute with an Unsqueeze of every non-constant input.
_ELEMENTWISE = {"Clip", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf",
                "HardSigmoid", "Softplus", "Elu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Identity"}


def simplify(model: Any) -> Any:
    """Apply the pass to an ``onnx.ModelProto`` in place until nothing changes; returns it."""
    _Pass(model.graph).run()
    _Rounding(model.graph).run()
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


#: ONNX TensorProto data types of the rounding pair.
_FLOAT, _FLOAT16 = 1, 10
#: Ops that commute with fp16 rounding of their first input (monotone, zero and NaN kept; Clip: fp16 bounds).
_COMMUTE_ROUNDING = {"Relu", "MaxPool", "Clip"}


class _Rounding:
    """Moves fp16 rounding pairs (``Cast(to=float16) -> Cast(to=float)``) past ops that commute with them."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.outputs = {o.name for o in graph.output}
        self.tensors = {t.name: t for t in graph.initializer}  # read only for Clip bounds (weights stay protos)
        for n in graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.tensors[n.output[0]] = n.attribute[0].t

    def run(self) -> None:
        nodes = list(self.graph.node)
        if not any(_is_cast(n, _FLOAT16) for n in nodes):  # networks' exports have none: nothing to do
            return
        changed = True
        while changed:
            changed = False
            consumers: dict[str, list[Any]] = {}
            for n in nodes:
                for i in n.input:
                    consumers.setdefault(i, []).append(n)
            for low in nodes:
                pair = self._pair(low, consumers)
                if pair is not None and self._rewrite(pair, consumers):
                    changed = True
                    break
            nodes = self._pruned(nodes)
        self.graph.ClearField("node")
        self.graph.node.extend(nodes)

    def _pair(self, low: Any, consumers: dict[str, list[Any]]) -> Any:
        """``(source, low, high)`` when ``low`` is the fp16 Cast of a rounding pair read only by its fp32 Cast."""
        if not (_is_cast(low, _FLOAT16) and low.output[0] not in self.outputs):
            return None
        users = consumers.get(low.output[0], [])
        if len(users) != 1 or not _is_cast(users[0], _FLOAT):
            return None
        return low.input[0], low, users[0]

    def _rewrite(self, pair: Any, consumers: dict[str, list[Any]]) -> bool:
        source, low, high = pair
        users = consumers.get(high.output[0], [])
        if high.output[0] in self.outputs or len(users) != 1:
            return False
        user = users[0]
        if _is_cast(user, _FLOAT16):  # round(round(x)) == round(x)
            user.input[0] = source
            return True
        if user.op_type not in _COMMUTE_ROUNDING or len(user.output) != 1 or user.input[0] != high.output[0]:
            return False
        if user.op_type == "Clip" and not all(self._fp16_exact(b) for b in user.input[1:] if b):
            return False
        out = user.output[0]
        user.input[0] = source
        user.output[0] = out + "__unrounded"
        low.input[0] = user.output[0]
        high.output[0] = out
        return True

    def _fp16_exact(self, name: str) -> bool:
        from onnx import numpy_helper

        tensor = self.tensors.get(name)
        value = numpy_helper.to_array(tensor) if tensor is not None else None
        return value is not None and value.size == 1 and bool(value.astype("float16").astype(value.dtype) == value)

    def _pruned(self, nodes: list[Any]) -> list[Any]:
        """The nodes in topological order, rounding Casts whose results nobody reads dropped."""
        used = {i for n in nodes for i in n.input} | self.outputs
        kept = [n for n in nodes if n.op_type != "Cast" or n.output[0] in used]
        while len(kept) != len(nodes):
            nodes = kept
            used = {i for n in nodes for i in n.input} | self.outputs
            kept = [n for n in nodes if n.op_type != "Cast" or n.output[0] in used]
        return _topological(kept)


def _is_cast(node: Any, to: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def _topological(nodes: list[Any]) -> list[Any]:
    """``nodes`` reordered so every node follows its producers (stable otherwise)."""
    producer = {o: n for n in nodes for o in n.output}
    done: set[int] = set()
    out: list[Any] = []

    def visit(n: Any) -> None:
        stack = [(n, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in done:
                continue
            if ready:
                done.add(id(node))
                out.append(node)
                continue
            stack.append((node, True))
            for i in reversed(node.input):
                p = producer.get(i)
                if p is not None and id(p) not in done:
                    stack.append((p, False))

    for n in nodes:
        visit(n)
    return out


def _make(op: str, inputs: list[str], outputs: list[str]) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs)
