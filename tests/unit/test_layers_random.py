"""Random layers: randomNormal*, randomUniform*, randomBernoulli* (Like, Static, Dynamic) and categoricalDistribution.

The values cannot match Core ML's (Apple's random streams are undocumented), so the checks are
statistical: the mean and variance of 20000 draws lie within 5 standard errors of the documented
distribution's, frequencies within 5 standard errors of the probabilities computed here. Seeds
make the values repeatable. The reference ``CASES`` use parameters whose result is known without
any random stream (zero spread, probability 0 or 1, one-hot class probabilities).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from tests.unit.test_layers_base import Case, builder, case_test, save

N = 20000
SIGMAS = 5.0
TORCH = ("torch",)


def load(tmp_path, add, inputs, outputs=("out",)):
    """Load an ND network built by ``add`` over ``inputs`` (name -> shape) on torch."""
    b = builder(list(inputs.items()), outputs, nd=True)
    add(b)
    return mlupdate.load(save(b, tmp_path), executor="torch")


def draw(tmp_path, kind, params, seed=-1, shape=(100, 200)):
    """``N`` draws of one fill layer of ``kind`` (Like, Static or Dynamic) as a flat float64 array."""
    add_like = {"normal": "add_random_normal_like", "uniform": "add_random_uniform_like",
                "bernoulli": "add_random_bernoulli_like"}
    name = add_like[params[0]]
    kw = params[1]
    if kind == "like":
        model = load(tmp_path, lambda b: getattr(b, name)("r", "x", "out", seed=seed, **kw), {"x": shape})
        out = model.predict({"x": np.zeros(shape, np.float32)})["out"]
    elif kind == "static":
        fn = name.replace("_like", "_static")
        model = load(tmp_path, lambda b: getattr(b, fn)("r", "out", list(shape), seed=seed, **kw), {"x": (1,)})
        out = model.predict({"x": np.zeros(1, np.float32)})["out"]
    else:
        fn = name.replace("_like", "_dynamic")
        model = load(tmp_path, lambda b: getattr(b, fn)("r", ["s"], "out", seed=seed, **kw), {"s": (len(shape),)})
        out = model.predict({"s": np.array(shape, np.float32)})["out"]
    out = np.asarray(out, np.float64)
    assert out.shape == tuple(shape)
    return out.ravel()


def assert_moments(x, mean, var, mu4):
    """Sample mean and variance within 5 standard errors (``mu4``: fourth central moment)."""
    n = x.size
    assert abs(x.mean() - mean) <= SIGMAS * np.sqrt(var / n), (x.mean(), mean)
    se_var = np.sqrt(max(mu4 - var**2, 1e-30) / n)
    assert abs(x.var(ddof=1) - var) <= SIGMAS * se_var, (x.var(ddof=1), var)


KINDS = ("like", "static", "dynamic")


@pytest.mark.parametrize("kind", KINDS)
def test_normal_moments(tmp_path, kind):
    mean, std = 1.5, 2.0
    x = draw(tmp_path, kind, ("normal", {"mean": mean, "stddev": std}), seed=11)
    assert_moments(x, mean, std**2, 3 * std**4)


@pytest.mark.parametrize("kind", KINDS)
def test_uniform_moments_and_range(tmp_path, kind):
    lo, hi = -2.0, 3.0
    x = draw(tmp_path, kind, ("uniform", {"minval": lo, "maxval": hi}), seed=5)
    assert x.min() >= lo and x.max() <= hi
    w = hi - lo
    assert_moments(x, (lo + hi) / 2, w**2 / 12, w**4 / 80)


@pytest.mark.parametrize("kind", KINDS)
def test_bernoulli_frequency(tmp_path, kind):
    p = 0.3
    x = draw(tmp_path, kind, ("bernoulli", {"prob": p}), seed=2)
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert abs(x.mean() - p) <= SIGMAS * np.sqrt(p * (1 - p) / x.size)


def test_unseeded_draws_are_fresh_every_prediction_and_leave_the_global_rng_alone(tmp_path):
    state = torch.get_rng_state()
    a = draw(tmp_path, "like", ("normal", {"mean": 0.0, "stddev": 1.0}), seed=-1, shape=(50,))
    b = draw(tmp_path, "like", ("normal", {"mean": 0.0, "stddev": 1.0}), seed=-1, shape=(50,))
    assert not np.array_equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("kind", KINDS)
def test_a_seed_gives_the_same_values_on_every_run(tmp_path, kind):
    params = ("uniform", {"minval": 0.0, "maxval": 1.0})
    a = draw(tmp_path, kind, params, seed=123, shape=(4, 5))
    b = draw(tmp_path, kind, params, seed=123, shape=(4, 5))
    c = draw(tmp_path, kind, params, seed=124, shape=(4, 5))
    zero = draw(tmp_path, kind, params, seed=0, shape=(4, 5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(zero, draw(tmp_path, kind, params, seed=0, shape=(4, 5)))


def test_seeded_examples_of_a_batch_get_what_they_get_alone(tmp_path):
    model = load(tmp_path, lambda b: b.add_random_normal_like("r", "x", "out", 0.0, 1.0, seed=9), {"x": (3, 4)})
    xs = [{"x": np.full((3, 4), v, np.float32)} for v in range(3)]
    alone = model.predict(xs[0])["out"]
    for res in model.predict_batch(xs):
        np.testing.assert_array_equal(res["out"], alone)


def test_unseeded_examples_of_a_batch_draw_independently(tmp_path):
    model = load(tmp_path, lambda b: b.add_random_uniform_like("r", "x", "out", 0.0, 1.0, seed=-1), {"x": (30,)})
    res = model.predict_batch([{"x": np.zeros(30, np.float32)}] * 2)
    assert not np.array_equal(res[0]["out"], res[1]["out"])


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _categorical(tmp_path, x, **kw):
    model = load(tmp_path, lambda b: b.add_categorical_distribution("c", "x", "out", N, **kw), {"x": x.shape})
    return model, np.asarray(model.predict({"x": x})["out"])


def assert_frequencies(samples, probs):
    k = probs.shape[-1]
    for row, p in zip(samples.reshape(-1, samples.shape[-1]), probs.reshape(-1, k), strict=True):
        freq = np.bincount(row.astype(np.int64), minlength=k) / row.size
        assert freq.size == k
        np.testing.assert_array_less(np.abs(freq - p), SIGMAS * np.sqrt(p * (1 - p) / row.size) + 1e-12)


@pytest.mark.parametrize(("temperature", "shape"), [(1.0, (2, 5)), (2.5, (2, 1, 4)), (0.5, (6,))])
def test_categorical_logits_follow_the_softmax(tmp_path, temperature, shape):
    x = np.random.default_rng(3).normal(0, 1.5, shape).astype(np.float32)
    _, out = _categorical(tmp_path, x, is_logits=True, temperature=temperature, seed=4)
    assert out.shape == (*shape[:-1], N)
    assert_frequencies(out, _softmax(x.astype(np.float64) / temperature))


def test_categorical_probabilities_with_temperature(tmp_path):
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]], np.float32)
    _, out = _categorical(tmp_path, p, is_logits=False, seed=8)
    assert_frequencies(out, p.astype(np.float64))
    _, hot = _categorical(tmp_path, p, is_logits=False, temperature=2.0, seed=8)
    assert_frequencies(hot, _softmax(np.log(p.astype(np.float64)) / 2.0))  # p ** (1 / T), renormalized


def test_categorical_seed_and_batch(tmp_path):
    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    model, out = _categorical(tmp_path, x, seed=21)
    np.testing.assert_array_equal(model.predict({"x": x})["out"], out)
    batch = model.predict_batch([{"x": x[:, ::-1].copy()}, {"x": x}])
    np.testing.assert_array_equal(batch[1]["out"], out)


def test_categorical_refuses_negative_probabilities(tmp_path):
    model = load(tmp_path, lambda b: b.add_categorical_distribution("c", "x", "out", 3, is_logits=False),
                 {"x": (3,)})
    with pytest.raises(mlupdate.LayerError, match="'c'"):
        model.predict({"x": np.array([0.5, -0.1, 0.6], np.float32)})


def test_invalid_parameters_are_spec_errors(tmp_path):
    with pytest.raises(mlupdate.SpecError, match="numSamples"):
        load(tmp_path, lambda b: b.add_categorical_distribution("c", "x", "out", 0), {"x": (3,)})
    with pytest.raises(mlupdate.SpecError, match="prob"):
        load(tmp_path, lambda b: b.add_random_bernoulli_like("r", "x", "out", prob=1.5), {"x": (3,)})


def test_random_layers_in_a_legacy_network_are_spec_errors(tmp_path):
    b = builder([("x", (3,))], ("out",))
    b.add_random_normal_like("r", "x", "out")
    with pytest.raises(mlupdate.SpecError, match="ND array mapping"):
        mlupdate.load(save(b, tmp_path))


def test_a_dynamic_shape_must_not_be_negative(tmp_path):
    model = load(tmp_path, lambda b: b.add_random_uniform_dynamic("r", ["s"], "out"), {"s": (2,)})
    with pytest.raises(mlupdate.LayerError, match="negative"):
        model.predict({"s": np.array([2, -1], np.float32)})


# -- reference cases: results that no random stream can change -----------------------------------------


def _const(value):
    return lambda *xs: np.full(xs[0].shape, value, np.float32)


def _dyn_const(value):
    return lambda s: np.full([int(v) for v in s], value, np.float32)


def _static(value, shape):
    return lambda *xs: np.full(shape, value, np.float32)


X = np.zeros((2, 3), np.float32)
X1 = np.zeros((4,), np.float32)
S = np.array([2, 3, 1], np.float32)
ONE_HOT = np.array([0.0, 0.0, 1.0, 0.0, 0.0], np.float32)
ONE_HOT_ROW = np.array([[0.0, 1.0, 0.0]], np.float32)
LOGITS = np.array([0.0, 0.0, 0.0, 100.0], np.float32)


def _argmax_samples(n):
    return lambda x: np.full((*x.shape[:-1], n), np.argmax(x, axis=-1)[..., None], np.float32)


CASES = [
    Case("random_normal_like_zero_std", lambda b: b.add_random_normal_like("r", "x", "out", 2.5, 0.0, seed=-1),
         {"x": X}, _const(2.5), nd=True, executors=TORCH),
    Case("random_normal_static_zero_std",
         lambda b: b.add_random_normal_static("r", "out", [3, 2], -1.0, 0.0, seed=3),
         {"x": X1}, _static(-1.0, (3, 2)), nd=True, executors=TORCH),
    Case("random_normal_dynamic_zero_std", lambda b: b.add_random_normal_dynamic("r", ["s"], "out", 0.5, 0.0),
         {"s": S}, _dyn_const(0.5), nd=True, executors=TORCH),
    Case("random_uniform_like_low_eq_high", lambda b: b.add_random_uniform_like("r", "x", "out", 4.0, 4.0),
         {"x": X1}, _const(4.0), nd=True, executors=TORCH),
    Case("random_uniform_static_low_eq_high",
         lambda b: b.add_random_uniform_static("r", "out", [5], -3.0, -3.0, seed=1),
         {"x": X}, _static(-3.0, (5,)), nd=True, executors=TORCH),
    Case("random_uniform_dynamic_low_eq_high",
         lambda b: b.add_random_uniform_dynamic("r", ["s"], "out", 7.0, 7.0, seed=2),
         {"s": S}, _dyn_const(7.0), nd=True, executors=TORCH),
    Case("random_bernoulli_like_prob_1", lambda b: b.add_random_bernoulli_like("r", "x", "out", prob=1.0),
         {"x": X}, _const(1.0), nd=True, executors=TORCH),
    Case("random_bernoulli_like_prob_0", lambda b: b.add_random_bernoulli_like("r", "x", "out", prob=0.0, seed=4),
         {"x": X}, _const(0.0), nd=True, executors=TORCH),
    Case("random_bernoulli_static_prob_1",
         lambda b: b.add_random_bernoulli_static("r", "out", [2, 2, 2], prob=1.0),
         {"x": X1}, _static(1.0, (2, 2, 2)), nd=True, executors=TORCH),
    Case("random_bernoulli_dynamic_prob_0",
         lambda b: b.add_random_bernoulli_dynamic("r", ["s"], "out", prob=0.0),
         {"s": S}, _dyn_const(0.0), nd=True, executors=TORCH),
    Case("categorical_one_hot_probabilities",
         lambda b: b.add_categorical_distribution("c", "x", "out", 7, is_logits=False),
         {"x": ONE_HOT}, _argmax_samples(7), nd=True, executors=TORCH),
    Case("categorical_one_hot_row_seeded",
         lambda b: b.add_categorical_distribution("c", "x", "out", 4, is_logits=False, seed=6),
         {"x": ONE_HOT_ROW}, _argmax_samples(4), nd=True, executors=TORCH),
    Case("categorical_dominant_logit",
         lambda b: b.add_categorical_distribution("c", "x", "out", 5, is_logits=True, temperature=2.0),
         {"x": LOGITS}, _argmax_samples(5), nd=True, executors=TORCH),
]

test_cases = case_test(CASES)

REFERENCE = "properties the distribution fixes (constant fills, prob 0 or 1, one-hot probabilities); statistics"
