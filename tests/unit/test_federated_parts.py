"""The federated pieces that need no Ray: partitions, the weights on the wire, the node's feature cache, CLI checks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import mlupdate
from mlupdate.cli import main
from mlupdate.federated import local
from mlupdate.federated.data import hold_out, partition
from mlupdate.federated.weights import updatable_arrays, with_arrays
from mlupdate.spec.io import write_spec
from tests.unit import _update_models as M

LABELS = ["cat"] * 30 + ["dog"] * 20


def test_iid_splits_evenly_and_is_seeded():
    parts = partition(LABELS, 4, "iid", seed=1)
    assert sorted(i for p in parts for i in p) == list(range(50)) and [len(p) for p in parts] == [13, 13, 12, 12]
    assert parts == partition(LABELS, 4, "iid", seed=1) != partition(LABELS, 4, "iid", seed=2)


def test_by_label_gives_each_user_one_label():
    parts = partition(LABELS, 5, "by-label")
    assert sorted(i for p in parts for i in p) == list(range(50))
    assert [set(LABELS[i] for i in p) for p in parts] == [{"cat"}, {"dog"}, {"cat"}, {"dog"}, {"cat"}]
    assert [set(LABELS[i] for i in p) for p in partition(LABELS, 1, "by-label")] == [{"cat", "dog"}]


def test_dirichlet_skews_with_small_alpha():
    skewed = partition(LABELS, 5, "dirichlet:0.1", seed=0)
    even = partition(LABELS, 5, "dirichlet:1000", seed=0)
    assert sorted(i for p in skewed for i in p) == list(range(50)) and all(skewed)

    def spread(parts):
        return np.mean([abs(Counter(LABELS[i] for i in p)["cat"] / len(p) - 0.6) for p in parts])
    assert spread(skewed) > 2 * spread(even)


def test_partition_errors_name_the_fix():
    with pytest.raises(mlupdate.ParameterError, match="iid, by-label or dirichlet"):
        partition(LABELS, 2, "shards")
    with pytest.raises(mlupdate.ParameterError, match="ALPHA must be a positive"):
        partition(LABELS, 2, "dirichlet:-1")
    with pytest.raises(mlupdate.ParameterError, match="between 1 and 50 users"):
        partition(LABELS, 51)
    with pytest.raises(mlupdate.TrainingDataError, match="without examples"):
        partition(["a", "b", "b"], 3, "by-label")


def test_hold_out_keeps_every_label_on_both_sides():
    pairs = [(f"{i}.jpg", lab) for i, lab in enumerate(LABELS)]
    train, test = hold_out(pairs, 0.2, seed=0)
    assert Counter(lab for _, lab in test) == {"cat": 6, "dog": 4} and len(train) == 40
    assert not {p for p, _ in train} & {p for p, _ in test}


def test_only_updatable_layers_travel_and_round_trip_exactly():
    spec = M.dense_classifier(updatable=("d2",))
    arrays = updatable_arrays(spec)
    assert list(arrays) == ["d2.weights", "d2.bias"] and arrays["d2.weights"].dtype == np.float32
    assert with_arrays(spec, arrays).SerializeToString() == spec.SerializeToString()
    changed = with_arrays(spec, {k: v + 1 for k, v in arrays.items()})
    np.testing.assert_array_equal(updatable_arrays(changed)["d2.bias"], arrays["d2.bias"] + 1)
    with pytest.raises(mlupdate.UpdateError, match="missing \\['d2.bias'\\]"):
        with_arrays(spec, {"d2.weights": arrays["d2.weights"]})
    with pytest.raises(mlupdate.UpdateError, match="needs"):
        with_arrays(spec, {**arrays, "d2.bias": np.zeros(1)})


def test_node_features_are_computed_once_per_node_and_reused():
    spec = M.conv_classifier(image=False)
    rng = np.random.default_rng(0)
    shape = tuple(spec.description.input[0].type.multiArrayType.shape)
    data = [{"input": rng.standard_normal(shape).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(6)]
    start = local.cached_nodes()
    updated, metrics = local.train_local(spec, data, "node-a")
    assert local.cached_nodes() == start + 1 and metrics["num-examples"] == 6
    assert set(metrics) >= {"train-loss", "accuracy-before", "accuracy-after", "loss-before", "loss-after"}
    again = local.evaluate_local(updated, data, "node-a")
    assert local.cached_nodes() == start + 1  # same node, examples and frozen part: no second frozen pass
    assert again["loss"] == pytest.approx(metrics["loss-after"], rel=1e-5)
    local.evaluate_local(updated, data, "node-b")
    local.evaluate_local(updated, data, "node-a/test")
    local.evaluate_local(updated, data, "node-aa")
    assert local.cached_nodes() == start + 4
    local.forget("node-a")  # node-a and node-a/test; not node-aa
    assert local.cached_nodes() == start + 2


def test_federate_refuses_bad_settings_before_starting_ray(tmp_path, capsys):
    model = write_spec(M.dense_classifier(), tmp_path / "m.mlmodel")
    assert main(["federate", str(model), str(tmp_path), "--users", "2", "--rounds", "1"]) == 2
    assert "image classifier" in capsys.readouterr().err
    assert main(["federate", str(model), str(tmp_path), "--users", "0", "--rounds", "1"]) == 2
    assert main(["federate", str(model), str(tmp_path), "--users", "1", "--rounds", "1", "--out", str(model)]) == 2
    assert "never overwrites" in capsys.readouterr().err


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_a_renewed_node_task_trains_as_a_fresh_one_every_round(tmp_path, mu):
    path = str(tmp_path / "conv.mlmodel")
    write_spec(M.conv_classifier(image=False), path)
    spec = local.load_spec(path)
    rng = np.random.default_rng(1)
    shape = tuple(spec.description.input[0].type.multiArrayType.shape)
    data = [{"input": rng.standard_normal(shape).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(6)]
    params = {"seed": 3, "shuffle": True}
    runs = {}
    for base in (None, path):
        arrays, out = updatable_arrays(spec), []
        for _ in range(3):  # each round starts from the previous round's weights, moved as a server would
            arrays = {k: v * 0.9 for k, v in arrays.items()}
            updated, metrics = local.train_local(with_arrays(spec, arrays), data, f"renew-{mu}", params, mu, base=base)
            arrays = updatable_arrays(updated)
            out.append((arrays, metrics["loss-before"]))
        runs[base] = out
    for (fresh, loss_fresh), (renewed, loss_renewed) in zip(runs[None], runs[path], strict=True):
        assert loss_renewed == pytest.approx(loss_fresh, rel=1e-6)
        for k in fresh:
            np.testing.assert_allclose(renewed[k], fresh[k], rtol=1e-6, atol=1e-7)
    assert any(not np.array_equal(runs[path][0][0][k], runs[path][2][0][k]) for k in runs[path][0][0])
