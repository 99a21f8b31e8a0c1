"""itemSimilarityRecommender against a dense numpy reference written from ItemSimilarityRecommender.proto.

coremltools has no Python builder for this type, so the specs are built with Model_pb2 as Core ML's C++
builder (``transforms/ItemSimilarityRecommender.cpp``) writes them: a dictionary or sequence item input,
an int64 ``k``, optional exclusion / restriction sequences, a sequence and a dictionary output.
"""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.proto import Model_pb2

import mlupdate
from tests.unit._sklearn_coreml import write

MODEL_TYPES = ("itemSimilarityRecommender",)
REFERENCE = ("a dense numpy score matrix written from ItemSimilarityRecommender.proto's formula "
             "sum_i sim(i,k) * (r_i - shift_i) on hand-built specs")
RNG = np.random.default_rng(11)
N = 12


def _seq(t, strings):
    (t.sequenceType.stringType if strings else t.sequenceType.int64Type).SetInParent()


def _dict(t, strings):
    (t.dictionaryType.stringKeyType if strings else t.dictionaryType.int64KeyType).SetInParent()


def _spec(sim, shift, ids=None, item_input="dict", k=True, lists=(), outputs=("recs", "scores")):
    """A recommender with the dense similarity ``sim[i, k]`` (zeros left out) and shifts per observed item."""
    spec = Model_pb2.Model(specificationVersion=4)
    isr = spec.itemSimilarityRecommender
    strings = bool(ids) and isinstance(ids[0], str)
    for i in range(len(sim)):
        entry = isr.itemItemSimilarities.add(itemId=i, itemScoreAdjustment=shift[i])
        for j in np.flatnonzero(sim[i]):
            entry.similarItemList.add(itemId=int(j), similarityScore=float(sim[i, j]))
    if ids:
        (isr.itemStringIds if strings else isr.itemInt64Ids).vector.extend(ids)
    d = spec.description
    item_t = d.input.add(name="items").type
    _dict(item_t, strings) if item_input == "dict" else _seq(item_t, strings)
    isr.itemInputFeatureName = "items"
    if k:
        d.input.add(name="k").type.int64Type.SetInParent()
        isr.numRecommendationsInputFeatureName = "k"
    for field, name in lists:
        t = d.input.add(name=name).type
        _seq(t, strings)
        t.isOptional = True
        setattr(isr, field, name)
    if "recs" in outputs:
        _seq(d.output.add(name="recs").type, strings)
        isr.recommendedItemListOutputFeatureName = "recs"
    if "scores" in outputs:
        _dict(d.output.add(name="scores").type, strings)
        isr.recommendedItemScoreOutputFeatureName = "scores"
    return spec


def _reference(sim, shift, ratings, k=None, exclude=None, restrict=None):
    """Item numbers and scores, from the proto: score_k = sum_i sim(i,k) (r_i - shift_i), best first."""
    r = np.zeros(len(sim))
    observed = np.zeros(len(sim), bool)
    for i, v in ratings.items():
        r[i], observed[i] = v - shift[i], True
    scores = (r[:, None] * sim * observed[:, None]).sum(axis=0)
    candidates = [j for j in range(len(sim)) if j not in (set(ratings) if exclude is None else set(exclude))
                  and (restrict is None or j in restrict)]
    ranked = sorted(candidates, key=lambda j: (-scores[j], j))
    return ranked[:k] if k is not None else ranked, scores


def _table():
    sim = np.where(RNG.random((N, N)) < 0.4, RNG.uniform(0.1, 1.0, (N, N)), 0.0)
    np.fill_diagonal(sim, 0.0)
    return sim, np.where(RNG.random(N) < 0.5, RNG.normal(size=N), 0.0)


def test_dictionary_ratings_match_the_formula(tmp_path):
    sim, shift = _table()
    model = write(_spec(sim, shift), tmp_path / "r.mlmodel")
    users = [{int(i): float(v) for i, v in zip(RNG.choice(N, 3, replace=False), RNG.uniform(1, 5, 3), strict=True)}
             for _ in range(20)]
    got = model.predict_batch([{"items": u, "k": 5} for u in users])
    for u, res in zip(users, got, strict=True):
        ranked, scores = _reference(sim, shift, u, k=5)
        assert res["recs"] == ranked
        assert list(res["scores"]) == ranked
        np.testing.assert_allclose([res["scores"][j] for j in ranked], scores[ranked], rtol=1e-12, atol=1e-12)


def test_sequence_input_rates_each_item_one_and_k_defaults_to_all(tmp_path):
    sim, shift = _table()
    ids = [f"song{i}" for i in range(N)]
    spec = _spec(sim, shift, ids=ids, item_input="seq", k=False, outputs=("recs",))
    got = write(spec, tmp_path / "r.mlmodel").predict({"items": ["song3", "song7", "unknown"]})
    ranked, _ = _reference(sim, shift, {3: 1.0, 7: 1.0})
    assert got == {"recs": [ids[j] for j in ranked]} and len(ranked) == N - 2


def test_exclusion_and_restriction_lists(tmp_path):
    sim, shift = _table()
    ids = [100 + 3 * i for i in range(N)]
    spec = _spec(sim, shift, ids=ids, lists=(("itemExclusionInputFeatureName", "skip"),
                                             ("itemRestrictionInputFeatureName", "only")))
    model = write(spec, tmp_path / "r.mlmodel")
    user = {ids[1]: 4.0, ids[5]: 2.0}
    numbers = {1: 4.0, 5: 2.0}
    res = model.predict({"items": user, "k": 20, "skip": [], "only": [ids[j] for j in (0, 1, 2, 9, 10)]})
    assert res["recs"] == [ids[j] for j in _reference(sim, shift, numbers, exclude=[], restrict={0, 1, 2, 9, 10})[0]]
    res = model.predict({"items": user, "k": 3, "skip": [ids[0], ids[2]]})
    assert res["recs"] == [ids[j] for j in _reference(sim, shift, numbers, k=3, exclude=[0, 2])[0]]
    res = model.predict({"items": user, "k": 3})  # exclusion input omitted: the user's items are excluded
    assert res["recs"] == [ids[j] for j in _reference(sim, shift, numbers, k=3)[0]]


def test_ties_go_to_the_earlier_item():
    sim = np.zeros((4, 4))
    sim[0, [3, 1, 2]] = 0.5
    model = mlupdate.Model(_spec(sim, np.zeros(4)))
    assert model.predict({"items": {0: 1.0}, "k": 2})["recs"] == [1, 2]


def test_bad_inputs_and_specs_raise_clear_errors(tmp_path):
    sim, shift = _table()
    model = mlupdate.Model(_spec(sim, shift))
    with pytest.raises(mlupdate.FeatureError, match="'k'.*0 or more"):
        model.predict({"items": {0: 1.0}, "k": -1})
    with pytest.raises(mlupdate.FeatureError, match="Missing input 'k'"):
        model.predict({"items": {0: 1.0}})
    with pytest.raises(mlupdate.FeatureError, match="int keys"):
        model.predict({"items": {"a": 1.0}, "k": 1})
    spec = _spec(sim, shift, ids=list(range(N - 1)))
    with pytest.raises(mlupdate.SpecError, match="only 11 item ids"):
        mlupdate.Model(spec)
    spec = _spec(sim, shift, ids=[f"s{i}" for i in range(N)])
    _dict(spec.description.output[1].type, strings=False)
    with pytest.raises(mlupdate.SpecError, match="'scores' holds int64 ids"):
        mlupdate.Model(spec)
    spec = _spec(sim, shift, outputs=())
    spec.description.output.add(name="x").type.doubleType.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="names no output"):
        mlupdate.Model(spec)


def test_an_item_number_past_the_array_limit_is_refused_before_allocating():
    sim = np.zeros((3, 3))
    sim[0, 1] = 0.5
    spec = _spec(sim, np.zeros(3))
    spec.itemSimilarityRecommender.itemItemSimilarities[0].similarItemList[0].itemId = 2**31  # found by the fuzzer
    with pytest.raises(mlupdate.SpecError, match="more than the limit"):
        mlupdate.Model(spec)
