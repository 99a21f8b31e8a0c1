"""Keras layers as legacy (rank-5) Core ML layers, as the classic coremltools Keras converter emitted them.

Each function takes coremltools' ``NeuralNetworkBuilder``, one :class:`KerasOp` and its input and
output blob names. Keras kernels are channel-last (``[kh, kw, in, out]`` for Conv2D, ``[in, out]``
for Dense); the builder transposes convolution kernels itself and Dense kernels are transposed here,
exactly as the old converter did. BatchNormalization is folded into the batchnorm layer's gamma/beta
with mean 0 and variance ``1 - 1e-5`` (the builder's epsilon is ``1e-5``), again as the old converter did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlupdate.errors import ConversionError

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@dataclass
class KerasOp:
    """One layer to emit: a Keras layer, or an activation split off a Conv2D/Dense.

    Attributes:
        name: Core ML layer name (the Keras layer name, or ``<layer>__activation__``).
        class_name: Keras class name (``Conv2D``, ``Dense``, ``Activation``, ...).
        config: The Keras layer config.
        weights: The layer's weights, in Keras order.
        rank: Rank of the input tensor without the batch axis (3 for images, 1 for vectors).
        keras3: Whether the file was written by Keras 3 (hard_sigmoid changed definition).
    """

    name: str
    class_name: str
    config: dict[str, Any]
    weights: list[np.ndarray] = field(default_factory=list)
    rank: int = 3
    keras3: bool = False


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


def _channels_last(op: KerasOp) -> None:
    if op.config.get("data_format", "channels_last") != "channels_last":
        raise ConversionError(f"Layer '{op.name}' uses data_format='{op.config['data_format']}'; only "
                              "channels_last (Keras' default) is supported.")


def activation_name(act: Any) -> str:
    """The name of a Keras activation from its config (a string, or a serialized function)."""
    if isinstance(act, dict):
        act = act.get("config", {}).get("name") or act.get("class_name")
    return str(act or "linear").lower()


def add_activation(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """An ``Activation`` layer (or one split off a Conv2D/Dense)."""
    act = activation_name(op.config.get("activation"))
    simple = {"relu": "RELU", "sigmoid": "SIGMOID", "tanh": "TANH", "softplus": "SOFTPLUS", "softsign": "SOFTSIGN"}
    if act == "softmax":
        if op.config.get("axis", -1) not in (-1, op.rank):
            raise ConversionError(f"Layer '{op.name}': softmax over axis {op.config['axis']}; only the last "
                                  "(channel) axis is supported.")
        builder.add_softmax(name=op.name, input_name=inp, output_name=out)
    elif act in simple:
        builder.add_activation(op.name, simple[act], inp, out)
    elif act == "linear":
        builder.add_activation(op.name, "LINEAR", inp, out, params=[1.0, 0.0])
    elif act == "elu":
        builder.add_activation(op.name, "ELU", inp, out, params=1.0)
    elif act == "selu":
        builder.add_activation(op.name + "__elu__", "ELU", inp, out + "_elu", params=SELU_ALPHA)
        builder.add_elementwise(op.name, input_names=[out + "_elu"], output_name=out, mode="MULTIPLY",
                                alpha=SELU_SCALE)
    elif act == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6; Keras 2: clip(0.2 x + 0.5, 0, 1)
        builder.add_activation(op.name, "SIGMOID_HARD", inp, out, params=[1 / 6, 0.5] if op.keras3 else [0.2, 0.5])
    else:
        raise ConversionError(
            f"Layer '{op.name}' uses activation '{act}', which has no Core ML neural-network equivalent in "
            "mlupdate. Supported: relu, sigmoid, tanh, softmax, linear, elu, selu, softplus, softsign, hard_sigmoid."
        )


def add_conv2d(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``Conv2D`` / ``DepthwiseConv2D`` -> ``convolution`` (Keras kernel ``[kh, kw, in/groups, out]``)."""
    _channels_last(op)
    kernel = op.weights[0]
    kh, kw, cin, cout = kernel.shape
    groups = int(op.config.get("groups", 1))
    if op.class_name == "DepthwiseConv2D":
        groups = cin
        kernel = kernel.reshape(kh, kw, 1, cin * cout)
        cin, cout = 1, cin * cout
    padding = op.config.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise ConversionError(f"Layer '{op.name}' uses padding='{padding}'; only 'valid' and 'same' are supported.")
    use_bias = bool(op.config.get("use_bias", True))
    sh, sw = _pair(op.config.get("strides", 1))
    builder.add_convolution(name=op.name, kernel_channels=cin, output_channels=cout, height=kh, width=kw,
                            stride_height=sh, stride_width=sw, border_mode=padding, groups=groups, W=kernel,
                            b=op.weights[1] if use_bias else None, has_bias=use_bias, input_name=inp, output_name=out,
                            dilation_factors=list(_pair(op.config.get("dilation_rate", 1))))


def add_dense(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``Dense`` -> ``innerProduct`` with the kernel transposed to ``[out, in]``."""
    if op.rank != 1:
        raise ConversionError(f"Dense layer '{op.name}' takes a rank-{op.rank} input; add a Flatten (or "
                              "GlobalAveragePooling2D) before it, as Core ML's innerProduct flattens C, H and W.")
    kernel = op.weights[0]
    use_bias = bool(op.config.get("use_bias", True))
    builder.add_inner_product(name=op.name, W=np.ascontiguousarray(kernel.T), b=op.weights[1] if use_bias else None,
                              input_channels=kernel.shape[0], output_channels=kernel.shape[1], has_bias=use_bias,
                              input_name=inp, output_name=out)


def add_pooling(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """Max/average pooling, local or global (padding 'same' excludes the pad area, as in Keras)."""
    _channels_last(op)
    kind = "MAX" if "Max" in op.class_name else "AVERAGE"
    if op.class_name.startswith("Global"):
        builder.add_pooling(name=op.name, height=0, width=0, stride_height=0, stride_width=0, layer_type=kind,
                            padding_type="VALID", input_name=inp, output_name=out, exclude_pad_area=True,
                            is_global=True)
        return
    h, w = _pair(op.config.get("pool_size", 2))
    strides = op.config.get("strides")
    sh, sw = (h, w) if strides is None else _pair(strides)
    padding = op.config.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise ConversionError(f"Layer '{op.name}' uses padding='{padding}'; only 'valid' and 'same' are supported.")
    builder.add_pooling(name=op.name, height=h, width=w, stride_height=sh, stride_width=sw, layer_type=kind,
                        padding_type=padding.upper(), input_name=inp, output_name=out, exclude_pad_area=True)


def add_batchnorm(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``BatchNormalization`` (inference) folded into gamma/beta."""
    axis = op.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, op.rank):
        raise ConversionError(f"BatchNormalization '{op.name}' normalizes axis {axis}; only the channel axis (-1) "
                              "is supported.")
    w = list(op.weights)
    gamma = w.pop(0) if op.config.get("scale", True) else None
    beta = w.pop(0) if op.config.get("center", True) else None
    mean, var = w[0], w[1]
    gamma = np.ones_like(mean) if gamma is None else gamma
    beta = np.zeros_like(mean) if beta is None else beta
    f = 1.0 / np.sqrt(var + float(op.config.get("epsilon", 1e-3)))
    builder.add_batchnorm(name=op.name, channels=mean.size, gamma=gamma * f, beta=beta - gamma * mean * f,
                          mean=np.zeros_like(mean), variance=np.full_like(var, 1.0 - 1e-5), input_name=inp,
                          output_name=out)


def add_flatten(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``Flatten``: CHANNEL_LAST on images (so a following Dense needs no weight permutation)."""
    builder.add_flatten(name=op.name, mode=1 if op.rank == 3 else 0, input_name=inp, output_name=out)


def add_zero_padding(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``ZeroPadding2D`` -> ``padding`` (constant 0)."""
    _channels_last(op)
    p = op.config.get("padding", 1)
    if isinstance(p, int):
        top = bottom = left = right = p
    elif isinstance(p[0], int):
        top = bottom = int(p[0])
        left = right = int(p[1])
    else:
        (top, bottom), (left, right) = p
    builder.add_padding(name=op.name, left=left, right=right, top=top, bottom=bottom, value=0, input_name=inp,
                        output_name=out)


def add_relu_layer(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """``ReLU`` (plain or leaky) and ``LeakyReLU`` layers."""
    c = op.config
    slope = c.get("negative_slope", c.get("alpha", 0.0 if op.class_name == "ReLU" else 0.3)) or 0.0
    if c.get("max_value") is not None or c.get("threshold", 0.0):
        raise ConversionError(f"ReLU layer '{op.name}' has max_value/threshold, which mlupdate does not convert.")
    if slope:
        builder.add_activation(op.name, "LEAKYRELU", inp, out, params=[float(slope)])
    else:
        builder.add_activation(op.name, "RELU", inp, out)


def add_softmax_layer(builder: Any, op: KerasOp, inp: str, out: str) -> None:
    """The ``Softmax`` layer."""
    add_activation(builder, KerasOp(op.name, "Activation", {"activation": "softmax", "axis": op.config.get("axis", -1)},
                                    rank=op.rank), inp, out)


CONVERTERS: dict[str, Callable[[Any, KerasOp, str, str], None]] = {
    "Conv2D": add_conv2d, "Convolution2D": add_conv2d, "DepthwiseConv2D": add_conv2d,
    "Dense": add_dense,
    "MaxPooling2D": add_pooling, "MaxPool2D": add_pooling, "AveragePooling2D": add_pooling,
    "AvgPool2D": add_pooling, "GlobalAveragePooling2D": add_pooling, "GlobalMaxPooling2D": add_pooling,
    "GlobalAvgPool2D": add_pooling, "GlobalMaxPool2D": add_pooling,
    "BatchNormalization": add_batchnorm,
    "Flatten": add_flatten,
    "ZeroPadding2D": add_zero_padding,
    "Activation": add_activation,
    "ReLU": add_relu_layer, "LeakyReLU": add_relu_layer,
    "Softmax": add_softmax_layer,
}
SKIPPED = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout")
FUSED_ACTIVATION = ("Conv2D", "Convolution2D", "DepthwiseConv2D", "Dense")


def output_rank(op: KerasOp) -> int:
    """Rank (without batch) of the op's output."""
    if op.class_name == "Flatten":
        return 1
    if op.class_name.startswith("Global"):
        return 3 if op.config.get("keepdims") else 1
    return op.rank
