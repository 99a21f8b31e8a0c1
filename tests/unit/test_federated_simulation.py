"""Federated averaging of the demo model's head over 3 simulated users on Flower's Simulation Engine and Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlupdate
from mlupdate.federated.weights import updatable_arrays
from mlupdate.runtime.network import network_of
from mlupdate.spec.io import read_spec
from tests.unit.federated_support import pets_subset

pytestmark = pytest.mark.slow
flwr = pytest.importorskip("flwr")
ray = pytest.importorskip("ray")

from flwr.serverapp.strategy import FedAvg  # noqa: E402


class Capturing(FedAvg):
    """FedAvg that keeps every reply and every aggregate, to check the average against the replies."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.train: dict[int, tuple[list[tuple[dict, dict]], dict]] = {}
        self.evaluated: dict[int, list[dict]] = {}

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        got = [({k: v.numpy().copy() for k, v in m.content["arrays"].items()}, dict(m.content["metrics"]))
               for m in replies if not m.has_error()]
        self.train[server_round] = (got, {k: v.numpy().copy() for k, v in arrays.items()})
        return arrays, metrics

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        self.evaluated[server_round] = [dict(m.content["metrics"]) for m in replies if not m.has_error()]
        return super().aggregate_evaluate(server_round, replies)


@pytest.fixture(scope="module")
def demo_path() -> Path:
    from mlupdate.demo import demo_model_path

    return demo_model_path()


def test_fedavg_of_three_users_is_the_weighted_mean_and_fixes_the_confused_breeds(demo_path, pets, tmp_path):
    from mlupdate.federated.simulation import run_federated

    data = pets_subset(pets, tmp_path / "data", train=(9, 4), test=(6, 3))
    out = tmp_path / "Global.mlmodel"
    strategy = Capturing(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1, min_evaluate_nodes=1,
                         min_available_nodes=3)
    seen = []
    history = run_federated(demo_path, data, users=3, rounds=2, out=out, strategy=strategy, on_round=seen.append,
                            quiet=True, options={"partition": "iid", "seed": 0})
    assert not ray.is_initialized()  # the simulation stops the Ray it started
    assert [e["round"] for e in history] == [0, 1, 2] and seen == history

    original = read_spec(demo_path)
    initial = updatable_arrays(original)
    assert list(initial) == ["dense_5.weights", "dense_5.bias", "dense_6.weights", "dense_6.bias"]
    for r in (1, 2):
        replies, aggregate = strategy.train[r]
        assert len(replies) == 3 and history[r]["clients"] == 3 and history[r]["failures"] == 0
        n = np.array([m["num-examples"] for _, m in replies], dtype=np.float64)
        assert n.sum() == 26 and sorted(n) == [8, 9, 9]
        for key in initial:
            expected = sum(w * a[key].astype(np.float64) for (a, _), w in zip(replies, n / n.sum(), strict=True))
            np.testing.assert_allclose(aggregate[key], expected, rtol=1e-5, atol=1e-7)
            assert aggregate[key].shape == initial[key].shape and aggregate[key].dtype == np.float32
        for _, m in replies:
            assert 0 <= m["accuracy-before"] <= 1 and m["accuracy-after"] >= m["accuracy-before"]
        evaluated = strategy.evaluated[r]  # the nodes' evaluate handler: the global weights on their own photos
        assert sorted(m["num-examples"] for m in evaluated) == [8, 9, 9]
        assert all(0 <= m["accuracy"] <= 1 for m in evaluated)

    final = read_spec(out)
    for key, value in updatable_arrays(final).items():
        np.testing.assert_array_equal(value, strategy.train[2][1][key])
    before, after = network_of(original).layers, network_of(final).layers
    frozen = [i for i, layer in enumerate(before) if not layer.isUpdatable]
    assert len(frozen) == len(before) - 2
    assert all(before[i].SerializeToString() == after[i].SerializeToString() for i in frozen)
    assert final.description == original.description and final.isUpdatable
    assert network_of(final).updateParams == network_of(original).updateParams
    assert [p for p in mlupdate.lint(out) if p.severity == "error"] == []
    assert [p.message for p in mlupdate.lint(out)] == [p.message for p in mlupdate.lint(demo_path)]
    probe = sorted((data / "test" / "cat").glob("Sphynx_*.jpg"))[0]
    assert mlupdate.load(out).predict({"image": probe})["classLabel"] == "Cat"

    assert history[0]["accuracy"] < 0.75  # the original is wrong about both confused breeds (12 of 18 photos)
    assert history[2]["accuracy"] > history[0]["accuracy"] + 0.2
    saved = json.loads((tmp_path / "Global.history.json").read_text())
    assert saved["users"] == 3
    assert saved["rounds"] == history, (saved["rounds"], history)
    assert saved["strategy"] == "Capturing"
