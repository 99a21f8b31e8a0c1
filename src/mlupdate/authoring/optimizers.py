"""``mlupdate.SGD`` and ``mlupdate.Adam``: optimizer settings with the ranges and sets Core ML stores.

They mirror coremltools' ``SgdParams`` / ``AdamParams`` (same defaults, every double with a
``[min, max]`` range defaulting to ``[0, 1]``, the mini-batch size with an allowed set defaulting to
``{mini_batch_size}``) but are validated on construction, so a model can never be written with a
default outside its own range or set (which Core ML's validator rejects on device).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from mlupdate.errors import ParameterError
from mlupdate.spec.params import outside_domain

Range = tuple[float, float]


def _check_double(name: str, value: Any, bounds: Any) -> tuple[float, Range]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}.")
    try:
        lo, hi = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}_range must be a (min, max) pair of numbers, got {bounds!r}.") from None
    if not lo < hi:
        raise ParameterError(f"{name}_range=({lo}, {hi}): min must be less than max (as coremltools requires).")
    if not lo <= value <= hi:
        raise ParameterError(
            f"{name}={value} lies outside its allowed range [{lo}, {hi}]; Core ML rejects such a model. "
            f"Choose a value inside the range or widen {name}_range."
        )
    what = outside_domain(name, value)
    if what is not None:
        raise ParameterError(f"{name}={value}: {name} must be {what} for the optimizer to compute an update. "
                             "Choose such a value.")
    return float(value), (lo, hi)


def _check_batch(value: Any, allowed: Iterable[Any] | None) -> tuple[int, tuple[int, ...]]:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParameterError(f"mini_batch_size must be a positive integer, got {value!r}.")
    sizes = (value,) if allowed is None else tuple(allowed)
    if not sizes:
        raise ParameterError("mini_batch_sizes is empty; give at least the default mini_batch_size.")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
            raise ParameterError(f"mini_batch_sizes must hold positive integers, got {s!r}.")
    if len(set(sizes)) != len(sizes):
        raise ParameterError(f"mini_batch_sizes {list(sizes)} has duplicates; allowed values must be unique.")
    if value not in sizes:
        raise ParameterError(
            f"mini_batch_size={value} is not in mini_batch_sizes {list(sizes)}; Core ML requires the default "
            "to be one of the allowed values. Add it to the set."
        )
    return value, sizes


def _write_double(param: Any, value: float, bounds: Range) -> None:
    # Same assignments as coremltools' set_sgd_optimizer/set_adam_optimizer (presence included).
    param.defaultValue = value
    param.range.minValue = bounds[0]
    param.range.maxValue = bounds[1]


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, as Core ML's ``SGDOptimizer``.

    Args:
        learning_rate: Default learning rate (coremltools' default 0.01).
        mini_batch_size: Default mini-batch size (default 10).
        momentum: Default momentum (default 0).
        learning_rate_range: Allowed ``(min, max)`` of the learning rate (default ``(0, 1)``).
        momentum_range: Allowed ``(min, max)`` of the momentum (default ``(0, 1)``).
        mini_batch_sizes: Allowed mini-batch sizes (default ``{mini_batch_size}``).

    Raises:
        ParameterError: A value outside its range, ``min >= max``, a batch size that is not a
            positive integer, duplicate allowed sizes, or a default not in the allowed sizes.
    """

    learning_rate: float = 0.01
    mini_batch_size: int = 10
    momentum: float = 0.0
    learning_rate_range: Range = (0.0, 1.0)
    momentum_range: Range = (0.0, 1.0)
    mini_batch_sizes: tuple[int, ...] | None = None

    kind = "sgd"

    def __init__(self, learning_rate: float = 0.01, mini_batch_size: int = 10, momentum: float = 0.0, *,
                 learning_rate_range: Range = (0.0, 1.0), momentum_range: Range = (0.0, 1.0),
                 mini_batch_sizes: Iterable[int] | None = None) -> None:
        lr, lr_range = _check_double("learning_rate", learning_rate, learning_rate_range)
        mom, mom_range = _check_double("momentum", momentum, momentum_range)
        batch, sizes = _check_batch(mini_batch_size, mini_batch_sizes)
        for key, value in (("learning_rate", lr), ("mini_batch_size", batch), ("momentum", mom),
                           ("learning_rate_range", lr_range), ("momentum_range", mom_range),
                           ("mini_batch_sizes", sizes)):
            object.__setattr__(self, key, value)

    def write(self, optimizer: Any) -> None:
        """Fill a ``Optimizer`` protobuf message (its ``sgdOptimizer``)."""
        optimizer.Clear()
        sgd = optimizer.sgdOptimizer
        _write_double(sgd.learningRate, self.learning_rate, self.learning_rate_range)
        sgd.miniBatchSize.defaultValue = self.mini_batch_size
        sgd.miniBatchSize.set.values.extend(self.mini_batch_sizes or ())
        _write_double(sgd.momentum, self.momentum, self.momentum_range)

    def summary(self) -> list[str]:
        """Lines like coremltools' ``inspect_optimizer``."""
        return _summary(self)


@dataclass(frozen=True)
class Adam:
    """Adam, as Core ML's ``AdamOptimizer``.

    Args:
        learning_rate: Default learning rate (default 0.01).
        mini_batch_size: Default mini-batch size (default 10).
        beta1: Default first-moment decay (default 0.9).
        beta2: Default second-moment decay (default 0.999).
        eps: Default epsilon (default 1e-8).
        learning_rate_range: Allowed ``(min, max)`` of the learning rate (default ``(0, 1)``).
        beta1_range: Allowed ``(min, max)`` of beta1 (default ``(0, 1)``).
        beta2_range: Allowed ``(min, max)`` of beta2 (default ``(0, 1)``).
        eps_range: Allowed ``(min, max)`` of eps (default ``(0, 1)``).
        mini_batch_sizes: Allowed mini-batch sizes (default ``{mini_batch_size}``).

    Raises:
        ParameterError: As for :class:`SGD`.
    """

    learning_rate: float = 0.01
    mini_batch_size: int = 10
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    learning_rate_range: Range = (0.0, 1.0)
    beta1_range: Range = (0.0, 1.0)
    beta2_range: Range = (0.0, 1.0)
    eps_range: Range = (0.0, 1.0)
    mini_batch_sizes: tuple[int, ...] | None = None

    kind = "adam"

    def __init__(self, learning_rate: float = 0.01, mini_batch_size: int = 10, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, *, learning_rate_range: Range = (0.0, 1.0),
                 beta1_range: Range = (0.0, 1.0), beta2_range: Range = (0.0, 1.0), eps_range: Range = (0.0, 1.0),
                 mini_batch_sizes: Iterable[int] | None = None) -> None:
        values: dict[str, Any] = {}
        for key, value, bounds in (("learning_rate", learning_rate, learning_rate_range),
                                   ("beta1", beta1, beta1_range), ("beta2", beta2, beta2_range),
                                   ("eps", eps, eps_range)):
            values[key], values[f"{key}_range"] = _check_double(key, value, bounds)
        values["mini_batch_size"], values["mini_batch_sizes"] = _check_batch(mini_batch_size, mini_batch_sizes)
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def write(self, optimizer: Any) -> None:
        """Fill a ``Optimizer`` protobuf message (its ``adamOptimizer``)."""
        optimizer.Clear()
        adam = optimizer.adamOptimizer
        _write_double(adam.learningRate, self.learning_rate, self.learning_rate_range)
        adam.miniBatchSize.defaultValue = self.mini_batch_size
        adam.miniBatchSize.set.values.extend(self.mini_batch_sizes or ())
        _write_double(adam.beta1, self.beta1, self.beta1_range)
        _write_double(adam.beta2, self.beta2, self.beta2_range)
        _write_double(adam.eps, self.eps, self.eps_range)

    def summary(self) -> list[str]:
        """Lines like coremltools' ``inspect_optimizer``."""
        return _summary(self)


Optimizer = SGD | Adam


def _summary(opt: SGD | Adam) -> list[str]:
    names = {f.name for f in fields(opt)}
    lines = [f"Optimizer Type: {opt.kind}Optimizer",
             f"lr: {opt.learning_rate}, min: {opt.learning_rate_range[0]}, max: {opt.learning_rate_range[1]}",
             f"batch: {opt.mini_batch_size}, allowed_set: {list(opt.mini_batch_sizes or ())}"]
    for key, label in (("momentum", "momentum"), ("beta1", "beta1"), ("beta2", "beta2"), ("eps", "epsilon")):
        if key in names:
            lo, hi = getattr(opt, f"{key}_range")
            lines.append(f"{label}: {getattr(opt, key)}, min: {lo}, max: {hi}")
    return lines


def summarize_optimizer(update_params: Any) -> list[str]:
    """``inspect_optimizer``-style lines for the optimizer stored in a ``NetworkUpdateParameters``."""
    which = update_params.optimizer.WhichOneof("OptimizerType")
    if which is None:
        return ["Optimizer Type: None"]
    opt = getattr(update_params.optimizer, which)
    lines = [f"Optimizer Type: {which}"]
    keys = [("learningRate", "lr"), ("miniBatchSize", "batch")]
    keys += [("momentum", "momentum")] if which == "sgdOptimizer" else [("beta1", "beta1"), ("beta2", "beta2"),
                                                                       ("eps", "epsilon")]
    for key, label in keys:
        p = getattr(opt, key)
        if key == "miniBatchSize":
            lines.append(f"{label}: {p.defaultValue}, allowed_set: {list(p.set.values)}")
        else:
            lines.append(f"{label}: {p.defaultValue}, min: {p.range.minValue}, max: {p.range.maxValue}")
    return lines
