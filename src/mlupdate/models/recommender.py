"""Item-similarity recommenders (``itemSimilarityRecommender``) as runnable programs.

Semantics (``ItemSimilarityRecommender.proto``, Core ML's validator and its C++ builder
``transforms/ItemSimilarityRecommender.cpp``; mlupdate's choices where they say nothing, marked *choice*):

* Items are numbered ``0 .. n-1``; ``itemInt64Ids`` / ``itemStringIds`` (at most one, unique, long enough to
  index every item the table names) give each number the id the inputs and outputs use; without them the
  ids are the numbers themselves.
* Each ``SimilarItems`` entry is an observed item ``i`` with its ``similarItemList`` of ``(k, sim)`` and its
  ``itemScoreAdjustment``. The score of item ``k`` for a user is ``sum_i sim(i, k) * (r_i - shift_i)`` over
  the user's items ``i``. The proto's formula writes the shift as ``shift_k``, but its message puts the
  adjustment on the observed item and the builder documents it as "applied to the user's rating of the
  item", so the shift is the observed item's. Repeated ``(i, k)`` pairs add up.
* The item input is a dictionary ``{id: rating}``, or a sequence (or multiarray) of ids, each rated 1.0.
  Ids the model does not know have no similarities and add nothing (*choice*).
* Candidates are all ``n`` items (items nothing points to score 0) less the excluded items — the
  ``itemExclusionInputFeatureName`` sequence when given, else the input items — and, when the
  ``itemRestrictionInputFeatureName`` sequence is given, only the items in it.
* The ``k`` candidates with the highest scores are returned (``numRecommendationsInputFeatureName``,
  an int64; all candidates when not given), highest first; ties go to the lower item number, i.e. the
  order of the id list (*choice*). Outputs: the id sequence (``recommendedItemListOutputFeatureName``)
  and ``{id: score}`` of those items (``recommendedItemScoreOutputFeatureName``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.values import dictionary, feature, inputs_of, integer, within_limit

_KIND = "itemSimilarityRecommender"


def _item_ids(isr: Any, max_item: int) -> list[Any]:
    ints, strs = list(isr.itemInt64Ids.vector), list(isr.itemStringIds.vector)
    # items are numbered 0..max_item without gaps: one score each
    within_limit(max_item + 1, f"The {_KIND}'s item number {max_item} (items are numbered from 0)")
    if ints and strs:
        raise SpecError(f"The {_KIND} gives both itemInt64Ids and itemStringIds; give one of them (or neither).")
    ids: list[Any] = [int(v) for v in ints] or strs or list(range(max_item + 1))
    if not ids:
        raise SpecError(f"The {_KIND} has no items; add itemItemSimilarities (and item ids).")
    if len(ids) <= max_item:
        raise SpecError(f"The {_KIND}'s similarity table names item {max_item}, but only {len(ids)} item ids are "
                        "given; give one id per item number.")
    if len(set(ids)) != len(ids):
        raise SpecError(f"The {_KIND}'s item ids repeat; give each item one id.")
    return ids


def _declared(fds: dict[str, Any], name: str, what: str, types: Sequence[str]) -> Any:
    fd = fds.get(name)
    if fd is None or fd.type.WhichOneof("Type") not in types:
        raise SpecError(f"The {_KIND}'s {what} '{name}' must be declared as {' or '.join(t[:-4] for t in types)}; "
                        "fix the model's description.")
    return fd


class ItemSimilarityRecommenderProgram:
    """Recommends with an ``itemSimilarityRecommender`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``itemSimilarityRecommender``.

    Raises:
        SpecError: If the item ids, the similarity table or the interface are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        isr = spec.itemSimilarityRecommender
        rows, cols, sims, shifts = [], [], [], {}
        for entry in isr.itemItemSimilarities:
            for link in entry.similarItemList:
                rows.append(int(entry.itemId))
                cols.append(int(link.itemId))
                sims.append(float(link.similarityScore))
            shifts[int(entry.itemId)] = float(entry.itemScoreAdjustment)
        self.ids = _item_ids(isr, max([*rows, *cols, *shifts], default=-1))
        n = len(self.ids)
        self.index = {v: i for i, v in enumerate(self.ids)}
        self.sim = sparse.csr_matrix((sims, (rows, cols)), shape=(n, n), dtype=np.float64)
        self.shift = np.zeros(n)
        self.shift[list(shifts)] = list(shifts.values())
        ins = {fd.name: fd for fd in spec.description.input}
        outs = {fd.name: fd for fd in spec.description.output}
        name = isr.itemInputFeatureName or (next(iter(ins)) if len(ins) == 1 else "")
        if not name:
            raise SpecError(f"The {_KIND} has {len(ins)} inputs and no itemInputFeatureName; set it to the input "
                            "that holds the user's items.")
        self.items_fd = _declared(ins, name, "item input", ("dictionaryType", "sequenceType", "multiArrayType"))
        self.k_name = isr.numRecommendationsInputFeatureName
        if self.k_name:
            _declared(ins, self.k_name, "numRecommendations input", ("int64Type",))
        self.lists = {}
        for which, list_name in (("exclude", isr.itemExclusionInputFeatureName),
                                 ("restrict", isr.itemRestrictionInputFeatureName)):
            if list_name:
                self.lists[which] = _declared(ins, list_name, f"item {which} input", ("sequenceType", "multiArrayType"))
        self.list_out = isr.recommendedItemListOutputFeatureName
        self.score_out = isr.recommendedItemScoreOutputFeatureName
        if not (self.list_out or self.score_out):
            raise SpecError(f"The {_KIND} names no output; set recommendedItemListOutputFeatureName and/or "
                            "recommendedItemScoreOutputFeatureName.")
        if self.list_out:
            _declared(outs, self.list_out, "item list output", ("sequenceType",))
        if self.score_out:
            _declared(outs, self.score_out, "item score output", ("dictionaryType",))
        self._check_id_types(isinstance(self.ids[0], str), outs)
        self.inputs = {fd.name: fd for fd in inputs_of(spec)}

    def _check_id_types(self, strings: bool, outs: dict[str, Any]) -> None:
        for fd in [self.items_fd, *self.lists.values(), outs.get(self.list_out), outs.get(self.score_out)]:
            if fd is None:
                continue
            t = fd.type.WhichOneof("Type")
            oneof = {"dictionaryType": "KeyType", "sequenceType": "Type"}.get(t)
            got = oneof is not None and getattr(fd.type, t).WhichOneof(oneof) in ("stringKeyType", "stringType")
            if got != strings:
                want = "string" if strings else "int64"
                raise SpecError(f"The {_KIND}'s items have {want} ids, but feature '{fd.name}' holds "
                                f"{'string' if got else 'int64'} ids; declare it with {want} ids.")

    def _ids(self, value: Any, name: str) -> list[Any]:
        """The item ids in a sequence or multiarray value, in order."""
        strings = isinstance(self.ids[0], str)
        if isinstance(value, np.ndarray):
            value = value.reshape(-1).tolist()
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise FeatureError(f"Input '{name}' is a sequence of item ids; pass a list, got {type(value).__name__}.")
        out = []
        for v in value:
            if strings and not isinstance(v, str):
                raise FeatureError(f"Input '{name}' holds string item ids, but {v!r} is a {type(v).__name__}.")
            out.append(v if strings else integer(v, self.inputs[name]))
        return out

    def _ratings(self, example: dict[str, Any]) -> dict[Any, float]:
        value = feature(example, self.inputs[self.items_fd.name])
        if self.items_fd.type.WhichOneof("Type") == "dictionaryType":
            return dictionary(value, self.inputs[self.items_fd.name])
        return dict.fromkeys(self._ids(value, self.items_fd.name), 1.0)

    def _numbers(self, ids: Sequence[Any]) -> np.ndarray:
        return np.asarray([self.index[v] for v in ids if v in self.index], dtype=np.int64)

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Recommend for every example: ``{list_output: [ids], score_output: {id: score}}``."""
        ratings = [self._ratings(ex) for ex in examples]
        seen = [self._numbers(list(r)) for r in ratings]
        vals = [np.asarray([r[v] for v in r if v in self.index], dtype=np.float64) for r in ratings]
        user = np.repeat(np.arange(len(examples)), [len(s) for s in seen])
        cols = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        shifted = np.concatenate(vals) - self.shift[cols]
        n = len(self.ids)
        scores = (sparse.csr_matrix((shifted, (user, cols)), shape=(len(examples), n)) @ self.sim).toarray()
        return [self._recommend(ex, scores[b], seen[b]) for b, ex in enumerate(examples)]

    def _recommend(self, example: dict[str, Any], scores: np.ndarray, seen: np.ndarray) -> dict[str, Any]:
        candidate = np.ones(len(self.ids), dtype=bool)
        excluded = example.get(self.lists["exclude"].name) if "exclude" in self.lists else None
        candidate[seen if excluded is None else self._numbers(self._ids(excluded, self.lists["exclude"].name))] = False
        restricted = example.get(self.lists["restrict"].name) if "restrict" in self.lists else None
        if restricted is not None:
            keep = np.zeros_like(candidate)
            keep[self._numbers(self._ids(restricted, self.lists["restrict"].name))] = True
            candidate &= keep
        order = np.flatnonzero(candidate)
        order = order[np.argsort(-scores[order], kind="stable")]
        k_fd = self.inputs.get(self.k_name)
        if k_fd is not None and (example.get(k_fd.name) is not None or not k_fd.optional):
            k = integer(feature(example, k_fd), k_fd)
            if k < 0:
                raise FeatureError(f"Input '{k_fd.name}' is the number of recommendations; pass 0 or more, got {k}.")
            order = order[:k]
        out: dict[str, Any] = {}
        if self.list_out:
            out[self.list_out] = [self.ids[i] for i in order]
        if self.score_out:
            out[self.score_out] = {self.ids[i]: float(scores[i]) for i in order}
        return out
