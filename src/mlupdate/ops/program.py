"""An ML Program's function compiled to one torch module: Program -> Function -> Block -> Operations.

:func:`compile_function` reads a function of a ``MIL.proto`` Program (``main`` or another of a multifunction
model), takes the block of the function's opset, decodes every value (immediate tensors of every data type,
blob file values from the weights file), folds ``const`` and the ``constexpr_*`` ops once (their kernels run at
compile time), checks that every name is defined before it is used and every op is known, and looks up the
kernel of every other op in the registry (:mod:`mlupdate.ops`). Nested blocks (``cond``, ``while_loop``) compile
the same way and see the names of the blocks around them.

Types are held as the program declares them (see :mod:`mlupdate.ops.precision`): after every op, each output
whose declared type is fp16 is rounded to fp16 (held in float32), integers and bools take their declared type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlupdate.errors import Error, LayerError, SpecError
from mlupdate.ops import OPSETS, REFUSED, OpContext, kernel_for, supported_ops
from mlupdate.ops.precision import EXACT_OPS, held_tensor, hold
from mlupdate.spec.mil import OtherType, TensorType, decode_value, function_names, value_type
from mlupdate.spec.package import Weights

#: Input parameters that take several bindings (``TupleInputType`` in coremltools' op definitions).
VARIADIC: dict[str, frozenset[str]] = {
    "concat": frozenset({"values"}), "stack": frozenset({"values"}), "einsum": frozenset({"values"}),
    "while_loop": frozenset({"loop_vars"}), "make_list": frozenset({"elem_shape"}),
    "reshape_like": frozenset({"ref_tensors", "begins", "ends", "end_masks"}),
}

Type = TensorType | OtherType


@dataclass(frozen=True)
class Ref:
    """An op input: the name of a value computed at run time, or a compile-time constant.

    A numeric constant is also held as a torch buffer of the module (``slot``, so that it moves with the module to
    another device); a string or list constant is passed as it is (``slot`` -1).
    """

    name: str = ""
    const: Any = None
    slot: int = -1


@dataclass
class Op:
    """One compiled operation."""

    ctx: OpContext
    kernel: Any
    inputs: dict[str, list[Ref]]
    outputs: tuple[str, ...]
    types: tuple[Type, ...]
    blocks: tuple[Block, ...] = ()


@dataclass
class Block:
    """A compiled block: its input names, operations and output names."""

    inputs: tuple[str, ...]
    ops: list[Op]
    outputs: tuple[str, ...]


class ProgramModule(nn.Module):
    """One function of an ML Program as a torch module: ``forward(*inputs) -> tuple(outputs)``.

    Args:
        program: The ``MIL_pb2.Program`` message.
        function: The function to compile (``main`` for most models).
        weights: Where the program's blob file values are read from.

    Attributes:
        input_names, input_types: The function's inputs (states included), in order.
        output_names: The values the main block returns.
        states: The names of the inputs that are states.
        has_blocks: Whether an op has nested blocks (control flow: not expressible in an ONNX export).
        exportable: False when an op's kernel cannot be expressed in an ONNX export (random draws).

    Raises:
        SpecError: For a missing function or opset block, a name used before it is defined, an undecodable
            value or a constant that does not fit its declared type.
        UnsupportedModelError: For an op mlupdate does not run, naming it.
    """

    def __init__(self, program: Any, function: str, weights: Weights) -> None:
        super().__init__()
        if function not in program.functions:
            raise SpecError(f"The ML Program has no function '{function}'; it has {function_names(program)}. "
                            "Pass one of those as function_name.")
        fn = program.functions[function]
        if fn.opset not in fn.block_specializations:
            raise SpecError(f"Function '{function}' names opset '{fn.opset}' but holds no block for it.")
        self.opset = OPSETS.get(fn.opset, 0)
        if not self.opset:
            raise SpecError(f"Function '{function}' uses opset '{fn.opset}'; mlupdate knows {', '.join(OPSETS)}.")
        self.weights = weights
        self.input_names = tuple(i.name for i in fn.inputs)
        self.input_types = tuple(value_type(i.type, f"Input '{i.name}'") for i in fn.inputs)
        self.states = tuple(n for n, t in zip(self.input_names, self.input_types, strict=True)
                            if isinstance(t, OtherType) and t.kind == "state")
        self.has_blocks = False
        self.exportable = True
        self._consts: dict[str, tuple[Any, int]] = {}  # constant name -> (held numpy value, buffer slot)
        self._tensors: list[torch.Tensor] = []
        known = dict(zip(self.input_names, self.input_types, strict=True))
        self.block = self._block(fn.block_specializations[fn.opset], known, ())
        self.output_names = self.block.outputs
        for i, c in enumerate(self._tensors):
            self.register_buffer(f"c{i}", c, persistent=False)

    # -- compiling ---------------------------------------------------------------------------
    def _block(self, msg: Any, known: dict[str, Type], inputs: tuple[str, ...]) -> Block:
        scope = dict(known)
        ops: list[Op] = []
        for index, op in enumerate(msg.operations):
            compiled = self._op(op, index, scope)
            if compiled is not None:
                ops.append(compiled)
        for name in msg.outputs:
            if name not in scope:
                raise SpecError(f"A block returns '{name}', which no input or op before it defines.")
        return Block(inputs, ops, tuple(msg.outputs))

    def _op(self, op: Any, index: int, scope: dict[str, Type]) -> Op | None:
        outputs = tuple(o.name for o in op.outputs)
        name = _name_of(op, outputs, index)
        types = tuple(value_type(o.type, f"Output '{o.name}' of op '{name}'") for o in op.outputs)
        attrs = {k: decode_value(v, self.weights, f"Attribute '{k}' of op '{name}'")
                 for k, v in op.attributes.items() if k != "name"}
        if op.type == "const":
            if "val" not in attrs or len(outputs) != 1:
                raise SpecError(f"Const op '{name}' needs one output and a 'val' attribute.")
            scope[outputs[0]] = types[0]
            self._define(outputs[0], hold(attrs["val"], types[0], name))
            return None
        inputs: dict[str, list[Ref]] = {}
        for param, arg in op.inputs.items():
            refs = []
            for b in arg.arguments:
                if b.WhichOneof("binding") == "value":
                    where = f"Input '{param}' of op '{name}'"
                    value = hold(decode_value(b.value, self.weights, where), value_type(b.value.type, where), name)
                    refs.append(Ref(const=value, slot=self._slot(value)))
                elif b.name not in scope:
                    raise SpecError(f"Op '{name}' ({op.type}) reads '{b.name}' before any input or op defines it "
                                    "(the program is out of order or cyclic). Save the model again with coremltools.")
                else:
                    const, slot = self._consts.get(b.name, (None, -1))
                    refs.append(Ref(b.name, const, slot))
            if not refs or (len(refs) > 1 and param not in VARIADIC.get(op.type, ())):
                raise SpecError(f"Op '{name}' ({op.type}) binds {len(refs)} values to its input '{param}'; it takes "
                                "exactly one. Save the model again with coremltools.")
            inputs[param] = refs
        consts = {p: _unwrap(p, op.type, [r.const for r in refs]) for p, refs in inputs.items()
                  if all(r.const is not None for r in refs)}
        if op.type.startswith("constexpr_"):  # iOS16's constexpr ops hold their parameters as attributes
            consts.update({k: v for k, v in attrs.items() if k not in consts and isinstance(v, (np.ndarray, str))})
        ctx = OpContext(op.type, name=name, opset=self.opset, consts=consts, attrs=attrs,
                        out_types=tuple(_out_type(t) for t in types),
                        dynamic=frozenset(inputs) - frozenset(consts))
        if op.type not in _known_ops():
            raise SpecError(f"Op '{name}' is of type '{op.type}', which is not an op of MIL's opsets iOS15 to iOS18: "
                            "the program is damaged or was written by a newer Core ML. Save it again with coremltools.")
        kernel = kernel_for(op.type, self.opset, name)
        self.exportable &= getattr(kernel, "exportable", True)
        blocks = ()
        if op.blocks:
            self.has_blocks = True
            blocks = tuple(self._nested(b, scope) for b in op.blocks)
        if op.type.startswith("constexpr_"):
            if ctx.dynamic:
                raise SpecError(f"Op '{name}' ({op.type}) reads {sorted(ctx.dynamic)} at run time; constexpr ops "
                                "take constants only.")
            folded = Op(ctx, kernel, inputs, outputs, types)
            values = _as_tuple(_call(folded, {p: _to_torch(v) for p, v in consts.items()}))
            for out, value, t in zip(outputs, values, types, strict=False):
                scope[out] = t
                array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
                self._define(out, hold(array, t, name))
            return None
        scope.update(zip(outputs, types, strict=True))
        return Op(ctx, kernel, inputs, outputs, types, blocks)

    def _nested(self, msg: Any, scope: dict[str, Type]) -> Block:
        inner = dict(scope)
        names = tuple(i.name for i in msg.inputs)
        for i in msg.inputs:
            inner[i.name] = value_type(i.type, f"Block input '{i.name}'")
        return self._block(msg, inner, names)

    def _define(self, name: str, value: Any) -> None:
        self._consts[name] = (value, self._slot(value))

    def _slot(self, value: Any) -> int:
        if not isinstance(value, np.ndarray) or value.dtype.kind in "OUS":
            return -1
        shared = value if value.flags.c_contiguous and value.flags.writeable else np.array(value, order="C")
        self._tensors.append(torch.from_numpy(shared))  # the buffer shares the constant's memory
        return len(self._tensors) - 1

    # -- running -------------------------------------------------------------------------------
    def forward(self, *args: Any) -> tuple[Any, ...]:
        env: dict[str, Any] = dict(zip(self.input_names, args, strict=True))
        return run_block(self.block, env, list(self._buffers.values()))


def _known_ops() -> set[str]:
    """Every MIL op name the registry runs or refuses with a reason."""
    return set(supported_ops()) | set(REFUSED)


def run_block(block: Block, env: dict[str, Any], consts: list[Any]) -> tuple[Any, ...]:
    """Run a block's ops over ``env`` (updated in place); returns the block's outputs.

    ``consts`` are the module's constant buffers (by slot).
    """
    for op in block.ops:
        args: dict[str, Any] = {}
        for param, refs in op.inputs.items():
            vals = [consts[r.slot] if r.slot >= 0 else r.const if r.const is not None else env[r.name] for r in refs]
            args[param] = vals if param in VARIADIC.get(op.ctx.op_type, ()) else vals[0]
        ctx = op.ctx
        if op.blocks:
            ctx = dataclasses.replace(ctx, blocks=tuple(_bind(b, env, consts) for b in op.blocks))
        out = _call(dataclasses.replace(op, ctx=ctx) if op.blocks else op, args)
        single_list = len(op.types) == 1 and isinstance(op.types[0], OtherType) and op.types[0].kind == "list"
        outs = (out,) if single_list else _as_tuple(out)
        if len(outs) != len(op.outputs):
            raise SpecError(f"Op '{op.ctx.name}' ({op.ctx.op_type}) declares {len(op.outputs)} output(s) but "
                            f"computes {len(outs)}. Save the model again with coremltools.")
        exact = op.ctx.op_type in EXACT_OPS
        for name, value, t in zip(op.outputs, outs, op.types, strict=False):
            env[name] = held_tensor(value, t, op.ctx, exact)
    return tuple(env[name] for name in block.outputs)


def _bind(block: Block, env: dict[str, Any], consts: list[Any]) -> Any:
    def call(*args: Any) -> tuple[Any, ...]:
        inner = dict(env)
        inner.update(zip(block.inputs, args, strict=True))
        return run_block(block, inner, consts)

    return call


def _call(op: Op, args: dict[str, Any]) -> Any:
    try:
        return op.kernel(op.ctx, args)
    except Error:
        raise
    except Exception as exc:  # noqa: BLE001 - a kernel's failure is reported with its op
        shapes = ", ".join(f"{k}: {list(v.shape)}" for k, v in args.items() if isinstance(v, torch.Tensor))
        raise LayerError(f"Op '{op.ctx.name}' ({op.ctx.op_type}) failed on inputs [{shapes}]: {exc}. The inputs "
                         "do not fit the op; check them against the model's description.") from exc


def _name_of(op: Any, outputs: Sequence[str], index: int) -> str:
    attr = op.attributes.get("name")
    if attr is not None and attr.immediateValue.tensor.strings.values:
        return str(attr.immediateValue.tensor.strings.values[0])
    return outputs[0] if outputs else f"{op.type}_{index}"


def _out_type(t: Type) -> tuple[str, tuple[int | None, ...] | None]:
    return (t.dtype, t.shape) if isinstance(t, TensorType) else (t.kind, None)


def _unwrap(param: str, op_type: str, values: list[Any]) -> Any:
    return values if param in VARIADIC.get(op_type, ()) else values[0]


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _to_torch(value: Any) -> Any:
    """A decoded constant as the kernels take it: numeric arrays as tensors; strings and lists as they are."""
    if isinstance(value, np.ndarray) and value.dtype.kind not in "OUS":
        return torch.from_numpy(np.array(value, order="C"))  # a copy; 0-d stays 0-d
    if isinstance(value, (list, tuple)):
        return [_to_torch(v) for v in value]
    return value
