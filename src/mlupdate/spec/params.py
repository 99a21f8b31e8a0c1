"""Update parameters as Core ML exposes them (``MLParameterDescription``): default plus constraint.

Keys are the snake_case forms of ``MLParameterKey``: ``learning_rate``, ``momentum``,
``mini_batch_size``, ``beta1``, ``beta2``, ``eps``, ``epochs``, ``shuffle``, ``seed`` and
``number_of_neighbors``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mlupdate.errors import ParameterError
from mlupdate.spec.model_types import network_of

#: What each optimizer parameter can be, whatever range a model declares: ``key -> (low, high, what it is)``
#: for a finite ``low <= value < high``. Core ML's validator checks only that a default lies in its declared
#: range; an optimizer cannot run with a negative learning rate or momentum, an Adam decay rate of 1 or more
#: (its bias correction divides by ``1 - beta**t``), a negative epsilon, or a value that is not finite.
OPTIMIZER_DOMAINS: dict[str, tuple[float, float, str]] = {
    "learning_rate": (0.0, math.inf, "a finite number of 0 or more"),
    "momentum": (0.0, math.inf, "a finite number of 0 or more"),
    "beta1": (0.0, 1.0, "in [0, 1)"),
    "beta2": (0.0, 1.0, "in [0, 1)"),
    "eps": (0.0, math.inf, "a finite number of 0 or more"),
}


def snake(key: str) -> str:
    """``learningRate`` -> ``learning_rate`` (snake_case keys pass unchanged)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", str(key)).lower()


def outside_domain(key: str, value: float) -> str | None:
    """What an optimizer parameter must be, when ``value`` is not (None when it is, or ``key`` has no domain).

    Keys are the snake_case ones of :data:`OPTIMIZER_DOMAINS`.
    """
    domain = OPTIMIZER_DOMAINS.get(key)
    if domain is None:
        return None
    low, high, what = domain
    return None if math.isfinite(value) and low <= value < high else what


@dataclass(frozen=True)
class ParameterDescription:
    """One update parameter: its default and what values are allowed.

    Attributes:
        key: snake_case ``MLParameterKey`` name.
        default: The model's default value.
        min: Lower bound of the allowed range, if any.
        max: Upper bound of the allowed range, if any.
        allowed: The allowed set, if any.
        kind: ``float``, ``int`` or ``bool``.
    """

    key: str
    default: Any
    min: float | None = None
    max: float | None = None
    allowed: tuple[int, ...] | None = None
    kind: str = "float"

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise if it is not allowed.

        Raises:
            ParameterError: If the value has the wrong type or lies outside the range or set.
        """
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParameterError(f"Parameter '{self.key}' must be True or False, got {value!r}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"Parameter '{self.key}' must be a number, got {value!r}.")
        if self.kind == "int":
            if int(value) != value:
                raise ParameterError(f"Parameter '{self.key}' must be an integer, got {value!r}.")
            value = int(value)
        else:
            value = float(value)
        if self.allowed is not None and value not in self.allowed:
            raise ParameterError(
                f"{self.key}={value} is not allowed by the model: allowed values are {list(self.allowed)}. "
                "Choose one of them, or re-author the model with a wider set (mlupdate make-updatable)."
            )
        if self.min is not None and self.max is not None and not (self.min <= value <= self.max):
            raise ParameterError(
                f"{self.key}={value} is outside the model's allowed range [{self.min}, {self.max}]. "
                "Choose a value inside it, or re-author the model with a wider range."
            )
        what = outside_domain(self.key, value)
        if what is not None:
            raise ParameterError(f"{self.key}={value} cannot be used: {self.key} must be {what}. Choose such a value.")
        return value

    def describe(self) -> str:
        """``0.01 (range [0, 1])``-style text."""
        text = f"{self.default}"
        if self.allowed is not None:
            text += f" (allowed {list(self.allowed)})"
        elif self.min is not None:
            text += f" (range [{self.min}, {self.max}])"
        return text


def _int_param(key: str, p: Any) -> ParameterDescription:
    which = p.WhichOneof("AllowedValues")
    if which == "range":
        return ParameterDescription(key, int(p.defaultValue), int(p.range.minValue), int(p.range.maxValue), kind="int")
    if which == "set":
        return ParameterDescription(key, int(p.defaultValue), allowed=tuple(int(v) for v in p.set.values), kind="int")
    return ParameterDescription(key, int(p.defaultValue), kind="int")


def _double_param(key: str, p: Any) -> ParameterDescription:
    if p.WhichOneof("AllowedValues") == "range":
        return ParameterDescription(key, float(p.defaultValue), float(p.range.minValue), float(p.range.maxValue))
    return ParameterDescription(key, float(p.defaultValue))


def optimizer_of(update_params: Any) -> tuple[str | None, Any]:
    """``("sgd" | "adam" | None, message)`` of a ``NetworkUpdateParameters``."""
    which = update_params.optimizer.WhichOneof("OptimizerType")
    if which == "sgdOptimizer":
        return "sgd", update_params.optimizer.sgdOptimizer
    if which == "adamOptimizer":
        return "adam", update_params.optimizer.adamOptimizer
    return None, None


def knn_parameters(spec: Any) -> dict[str, ParameterDescription]:
    """The update parameters a ``kNearestNeighborsClassifier`` declares (its number of neighbours)."""
    k = spec.kNearestNeighborsClassifier.numberOfNeighbors
    return {"number_of_neighbors": _int_param("number_of_neighbors", k)}


def network_parameters(spec: Any) -> dict[str, ParameterDescription]:
    """The update parameters a neural network declares (its optimizer's, epochs, shuffle, seed)."""
    up = network_of(spec).updateParams
    out: dict[str, ParameterDescription] = {}
    opt_kind, opt = optimizer_of(up)
    if opt is not None:
        out["learning_rate"] = _double_param("learning_rate", opt.learningRate)
        out["mini_batch_size"] = _int_param("mini_batch_size", opt.miniBatchSize)
        if opt_kind == "sgd":
            out["momentum"] = _double_param("momentum", opt.momentum)
        else:
            out["beta1"] = _double_param("beta1", opt.beta1)
            out["beta2"] = _double_param("beta2", opt.beta2)
            out["eps"] = _double_param("eps", opt.eps)
    if up.HasField("epochs"):
        out["epochs"] = _int_param("epochs", up.epochs)
    out["shuffle"] = ParameterDescription("shuffle", bool(up.shuffle.defaultValue), kind="bool")
    if up.HasField("seed"):
        out["seed"] = ParameterDescription("seed", int(up.seed.defaultValue), kind="int")
    return out
