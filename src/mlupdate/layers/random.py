"""Random layers: fills drawn from a distribution, and sampling from a categorical distribution.

randomNormalLike, randomNormalStatic, randomNormalDynamic, randomUniformLike, randomUniformStatic,
randomUniformDynamic, randomBernoulliLike, randomBernoulliStatic, randomBernoulliDynamic,
categoricalDistribution.

* ``*Like`` fills the shape of its input (the values are ignored), ``*Static`` the layer's
  ``outputShape`` (no input), ``*Dynamic`` the shape whose values its rank-1 input holds (the
  output shape depends on values, so those run one example at a time).
* ``categoricalDistribution`` reads ``[D1, .., D(R-1), K]`` class scores and draws ``numSamples``
  class indices per row: ``[D1, .., D(R-1), numSamples]``. Logits are divided by ``temperature``
  and passed through a softmax; probabilities ``p`` are first turned into logits ``log(p + eps)``.
  ``temperature`` 0 and ``eps`` 0 (unset in proto3) mean the documented defaults 1.0 and 1e-10.

Seeding. The proto only says the seed "is used" by the distribution; coremltools' builder writes
``-1`` by default and documents it as "random". So a negative seed draws fresh values on every
prediction, and any other seed, 0 included (proto3 cannot tell 0 from unset), makes the layer
deterministic: every prediction starts a new ``torch.Generator`` from the seed, so the same model
and seed give the same values on every run, on every device (values are drawn on the CPU). The
global torch random state is never read or changed.

Batches: with a seed, every example gets exactly the values it would get alone (the seeded draw
is repeated for each example). Without one, the examples of ``*Like`` layers and of
``categoricalDistribution`` get independent draws; a ``*Static`` layer has no input to tell it
the batch size, so the examples of one prediction batch share its draw.

Apple's random number streams are not documented and cannot be reproduced: the values are not
bit-identical to Core ML's, but follow the documented distributions. None of these layers export
to ONNX (``exportable = False``); networks that use them run on torch.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import check_size, int_list

Draw = Callable[[Sequence[int], torch.Generator], torch.Tensor]
DEFAULT_EPS = 1e-10
DEFAULT_TEMPERATURE = 1.0


def generator(seed: int) -> torch.Generator:
    """A fresh CPU generator started from ``seed``, or from fresh OS entropy when ``seed < 0``."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) if seed >= 0 else secrets.randbits(63))
    return gen


def normal(mean: float, std: float) -> Draw:
    """Draws from N(mean, std**2)."""
    return lambda shape, gen: torch.randn(tuple(shape), generator=gen) * std + mean


def uniform(low: float, high: float) -> Draw:
    """Draws from U[low, high)."""
    return lambda shape, gen: torch.rand(tuple(shape), generator=gen) * (high - low) + low


def bernoulli(prob: float) -> Draw:
    """Draws 1.0 with probability ``prob``, else 0.0."""
    return lambda shape, gen: (torch.rand(tuple(shape), generator=gen) < prob).to(torch.float32)


class RandomFill(nn.Module):
    """A ``*Like``, ``*Static`` or ``*Dynamic`` random fill (see the module docstring).

    Args:
        draw: Maps a shape and a generator to a float32 tensor of that shape.
        seed: The layer's seed (negative: fresh values on every prediction).
        source: ``like`` (shape of the input), ``static`` (``shape``) or ``dynamic`` (shape tensor input).
        shape: The Core ML output shape of a static fill.
    """

    exportable = False

    def __init__(self, draw: Draw, seed: int, source: str, shape: Sequence[int] = ()) -> None:
        super().__init__()
        self.draw, self.seed, self.source, self.shape = draw, int(seed), source, tuple(shape)
        # tells a static fill, which has no input, the device the graph runs on
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    def _fill(self, n: int, shape: Sequence[int]) -> torch.Tensor:
        check_size(shape, f"shape {list(shape)}")
        gen = generator(self.seed)
        if self.seed >= 0:
            return self.draw(shape, gen).unsqueeze(0).repeat((n,) + (1,) * len(shape))
        return self.draw((n, *shape), gen)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.source == "static":
            return self._fill(1, self.shape).to(self.anchor.device)
        x = xs[0]
        if self.source == "like":
            return self._fill(int(x.shape[0]), x.shape[1:]).to(device=x.device, dtype=x.dtype)
        if x.dim() != 2:
            raise ValueError(f"the shape input must be rank 1, got rank {x.dim() - 1}")
        outs = []
        for row in x:  # per_example: one row, but stay correct for any count
            shape = [int(v) for v in row.round().long().tolist()]
            if any(v < 0 for v in shape):
                raise ValueError(f"the shape input {shape} has a negative dimension")
            outs.append(self._fill(1, shape))
        if any(o.shape != outs[0].shape for o in outs):
            raise ValueError("the examples ask for different output shapes")
        return torch.cat(outs).to(device=x.device)


class RandomFillDynamic(RandomFill):
    """A ``*Dynamic`` fill: the output shape is the value of the input, so examples run one at a time."""

    per_example = True


def _nd_only(kind: str, ctx: BuildContext) -> None:
    if not ctx.nd:
        raise SpecError(
            f"Layer '{ctx.name}' is a {kind} layer, which Core ML accepts only in networks with ND array "
            "mapping (EXACT_ARRAY_MAPPING, specification 4 and later). Rebuild the network with ND shapes."
        )


def _static_shape(p: Any, kind: str, ctx: BuildContext) -> list[int]:
    shape = int_list(p.outputShape)
    if not shape or any(d <= 0 for d in shape):
        raise SpecError(
            f"Layer '{ctx.name}' ({kind}) has outputShape {shape}; it needs at least one dimension, all "
            "positive. Set the layer's outputShape."
        )
    return shape


def _fill_builder(kind: str, source: str, make: Callable[[Any, BuildContext], Draw]) -> None:
    def build(p: Any, ctx: BuildContext) -> nn.Module:
        _nd_only(kind, ctx)
        draw = make(p, ctx)
        if source == "static":
            return RandomFill(draw, int(p.seed), source, _static_shape(p, kind, ctx))
        cls = RandomFillDynamic if source == "dynamic" else RandomFill
        return cls(draw, int(p.seed), source)

    register(kind)(build)


def _normal(p: Any, ctx: BuildContext) -> Draw:
    if p.stdDev < 0:
        raise SpecError(f"Layer '{ctx.name}' has stdDev {p.stdDev}; a standard deviation cannot be negative.")
    return normal(float(p.mean), float(p.stdDev))


def _uniform(p: Any, ctx: BuildContext) -> Draw:
    if p.maxVal < p.minVal:
        raise SpecError(f"Layer '{ctx.name}' has minVal {p.minVal} above maxVal {p.maxVal}; swap them.")
    return uniform(float(p.minVal), float(p.maxVal))


def _bernoulli(p: Any, ctx: BuildContext) -> Draw:
    if not 0.0 <= p.prob <= 1.0:
        raise SpecError(f"Layer '{ctx.name}' has prob {p.prob}; a probability must lie in [0, 1].")
    return bernoulli(float(p.prob))


for _name, _make in (("Normal", _normal), ("Uniform", _uniform), ("Bernoulli", _bernoulli)):
    for _source in ("like", "static", "dynamic"):
        _fill_builder(f"random{_name}{_source.capitalize()}", _source, _make)


class Categorical(nn.Module):
    """``categoricalDistribution``: ``numSamples`` class indices per row of the last axis.

    Args:
        samples: Draws per row.
        logits: Whether the input holds logits (else probabilities).
        eps: Added to probabilities before their log.
        temperature: Divides the logits.
        seed: The layer's seed (negative: fresh values on every prediction).
    """

    exportable = False

    def __init__(self, samples: int, logits: bool, eps: float, temperature: float, seed: int) -> None:
        super().__init__()
        self.samples, self.logits, self.eps, self.temperature, self.seed = samples, logits, eps, temperature, seed

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The class probabilities of every row of ``x`` (float64, last axis sums to 1)."""
        x = x.detach().to(device="cpu", dtype=torch.float64)
        if not self.logits:
            if bool((x < 0).any()) or not bool(torch.isfinite(x).all()):
                raise ValueError("the input holds probabilities (isLogits is false) but has negative or "
                                 "non-finite values")
            x = torch.log(x + self.eps)
        elif not bool(torch.isfinite(x).all()):
            raise ValueError("the input logits have non-finite values")
        return torch.softmax(x / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError("the input must have rank 1 or more")
        probs = self.probabilities(x)
        lead, k = probs.shape[:-1], probs.shape[-1]
        if self.seed >= 0:  # each example draws what it would draw alone
            draws = [torch.multinomial(row.reshape(-1, k), self.samples, True, generator=generator(self.seed))
                     for row in probs]
            out = torch.stack(draws)
        else:
            out = torch.multinomial(probs.reshape(-1, k), self.samples, True, generator=generator(-1))
        return out.reshape((*lead, self.samples)).to(device=x.device, dtype=x.dtype)


@register("categoricalDistribution")
def _categorical(p: Any, ctx: BuildContext) -> nn.Module:
    _nd_only("categoricalDistribution", ctx)
    if p.numSamples <= 0:
        raise SpecError(f"Layer '{ctx.name}' has numSamples {p.numSamples}; it must be positive.")
    if p.temperature < 0 or p.eps < 0:
        raise SpecError(f"Layer '{ctx.name}' has temperature {p.temperature} and eps {p.eps}; neither may be "
                        "negative.")
    temperature = float(p.temperature) or DEFAULT_TEMPERATURE
    eps = float(p.eps) or DEFAULT_EPS
    return Categorical(int(p.numSamples), bool(p.isLogits), eps, temperature, int(p.seed))
