"""Classic model types: ``mlupdate.load(...).predict_batch`` against scikit-learn on the same inputs.

For each family (GLM, SVM, tree ensembles, scaler / normalizer, one-hot, pipelines) a scikit-learn
estimator is fitted on synthetic data, converted by coremltools and written as a ``.mlmodel``; both
sides then predict the same rows, 1 and 10,000 at a time, timed in turn (``interleaved_medians``):

* scikit-learn: ``predict`` (``transform`` for the transformers) on a ``[rows, features]`` array;
* mlupdate, two call forms: ``predict_arrays({"x": rows})`` (one array per input, results as arrays: the
  fastest form) and ``predict_batch`` on a prepared list of ``{"x": row}`` dictionaries (building the list is
  not timed; checking and converting each value is, and so is building one result dictionary per row).
  Classifiers also return their probabilities.

Types without a scikit-learn counterpart (nonMaximumSuppression, itemSimilarityRecommender) are timed
on their own (NMS on 1 and 1,000 rows: each row is a whole detection, 200 boxes).

Both sides run with one thread: ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``
are set to 1 before numpy is imported (override with ``--threads``).

Usage: ``python bench/bench_classic.py [--threads 1] [--repeats 30]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed calls per side for one row (for 10,000 rows a fifth of it, at least 3)")
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else argparse.Namespace(threads=1, repeats=30)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread variables)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, machine  # noqa: E402

ROWS = (1, 10_000)
FEATURES = 10


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS[-1], FEATURES))
    y = x @ rng.normal(size=FEATURES) + 0.3 * rng.normal(size=len(x))
    return x, y, np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))


def _cases(x: np.ndarray, y: np.ndarray, classes: np.ndarray) -> list[tuple[str, Any, np.ndarray]]:
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier

    fit, n = x[:2000], 2000
    cats = np.c_[(x[:, :3] > 0).astype(float), np.digitize(x[:, 3], [-1, 0, 1])].astype(np.float64)
    return [
        ("glmRegressor (LinearRegression)", LinearRegression().fit(fit, y[:n]), x),
        ("glmClassifier (LogisticRegression ovr, 3 classes)",
         LogisticRegression(multi_class="ovr").fit(fit, classes[:n]), x),
        ("supportVectorRegressor (SVR rbf)", SVR().fit(fit[:500], y[:500]), x),
        ("supportVectorClassifier (SVC rbf, 3 classes)", SVC().fit(fit[:500], classes[:500]), x),
        ("treeEnsembleClassifier (DecisionTree depth 8)", DecisionTreeClassifier(max_depth=8).fit(fit, classes[:n]), x),
        ("treeEnsembleClassifier (RandomForest 50 x depth 8)",
         RandomForestClassifier(50, max_depth=8, random_state=0).fit(fit, classes[:n]), x),
        ("treeEnsembleRegressor (GradientBoosting 100 x depth 3)",
         GradientBoostingRegressor(random_state=0).fit(fit, y[:n]), x),
        ("scaler (StandardScaler)", StandardScaler().fit(fit), x),
        ("normalizer (Normalizer l2)", Normalizer().fit(fit), x),
        ("oneHotEncoder (OneHotEncoder, 4 columns)", OneHotEncoder().fit(cats), cats),
        ("pipelineClassifier (StandardScaler + LogisticRegression)",
         make_pipeline(StandardScaler(), LogisticRegression(multi_class="ovr")).fit(fit, classes[:n]), x),
    ]


def _load(est: Any, width: int, folder: Path, i: int) -> Any:
    import coremltools as ct
    from coremltools.models import datatypes

    import mlupdate

    output = "out" if hasattr(est, "transform") and not hasattr(est, "predict") else "y"
    if hasattr(getattr(est, "init_", None), "constant_"):  # coremltools 9 wants scikit-learn < 1's scalar here
        est.init_.constant_ = float(np.ravel(est.init_.constant_)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = ct.converters.sklearn.convert(est, [("x", datatypes.Array(width))], output).get_spec()
    path = folder / f"m{i}.mlmodel"
    path.write_bytes(spec.SerializeToString())
    return mlupdate.load(path)


def _time(ours: Callable[[], Any], theirs: Callable[[], Any] | None, repeats: int) -> tuple[float, float | None]:
    funcs = {"ours": ours, **({"theirs": theirs} if theirs is not None else {})}
    t = interleaved_medians(funcs, repeats)
    return t["ours"], t.get("theirs")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def _no_sklearn_cases() -> list[tuple[str, Any, Callable[[int], list[dict[str, Any]]]]]:
    """nonMaximumSuppression (200 boxes, 5 classes) and itemSimilarityRecommender (500 items), built by hand."""
    from coremltools.proto import Model_pb2

    import mlupdate

    rng = np.random.default_rng(1)
    nms = Model_pb2.Model(specificationVersion=3)
    nms.nonMaximumSuppression.pickTop.perClass = True
    nms.nonMaximumSuppression.iouThreshold, nms.nonMaximumSuppression.confidenceThreshold = 0.5, 0.05
    for kind, names in (("input", ("conf", "boxes")), ("output", ("confidence", "coordinates"))):
        for name in names:
            fd = getattr(nms.description, kind).add(name=name)
            fd.type.multiArrayType.dataType = Model_pb2.ArrayFeatureType.DOUBLE
    p = nms.nonMaximumSuppression
    p.confidenceInputFeatureName, p.coordinatesInputFeatureName = "conf", "boxes"
    p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName = "confidence", "coordinates"
    boxes = np.hstack([rng.uniform(0.1, 0.9, (200, 2)), rng.uniform(0.05, 0.3, (200, 2))])
    conf = rng.dirichlet(np.ones(5), 200)

    rec = Model_pb2.Model(specificationVersion=4)
    isr = rec.itemSimilarityRecommender
    for i in range(500):
        entry = isr.itemItemSimilarities.add(itemId=i)
        for j in rng.choice(500, 20, replace=False):
            entry.similarItemList.add(itemId=int(j), similarityScore=float(rng.random()))
    rec.description.input.add(name="items").type.dictionaryType.int64KeyType.SetInParent()
    rec.description.input.add(name="k").type.int64Type.SetInParent()
    rec.description.output.add(name="recs").type.sequenceType.int64Type.SetInParent()
    isr.itemInputFeatureName, isr.numRecommendationsInputFeatureName = "items", "k"
    isr.recommendedItemListOutputFeatureName = "recs"
    users = [{int(i): float(v) for i, v in zip(rng.choice(500, 5), rng.uniform(1, 5, 5), strict=True)}
             for _ in range(100)]
    return [("nonMaximumSuppression (200 boxes, 5 classes, per class)", mlupdate.Model(nms),
             lambda n: [{"conf": conf, "boxes": boxes}] * min(n, 1000)),
            ("itemSimilarityRecommender (500 items x 20 similar, k=10)", mlupdate.Model(rec),
             lambda n: [{"items": users[i % 100], "k": 10} for i in range(n)])]


def main() -> None:
    warnings.simplefilter("ignore", FutureWarning)
    repeats, threads = ARGS.repeats, ARGS.threads
    x, y, classes = _data()
    print(f"Machine: {machine()}; {threads} thread(s) on both sides (OMP/MKL/OPENBLAS_NUM_THREADS={threads}); "
          f"median of {repeats} calls for 1 row, {max(3, repeats // 5)} for 10,000 rows.\n")
    print("| model type (scikit-learn estimator) | rows | mlupdate arrays ms | mlupdate dicts ms | scikit-learn ms "
          "| arrays / sklearn | dicts / sklearn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, est, data) in enumerate(_cases(x, y, classes)):
            model = _load(est, data.shape[1], Path(tmp), i)
            theirs = est.transform if not hasattr(est, "predict") else est.predict
            for n in ROWS:
                batch = [{"x": r} for r in data[:n]]
                t = interleaved_medians({"arrays": partial(model.predict_arrays, {"x": data[:n]}),
                                         "dicts": partial(model.predict_batch, batch),
                                         "sklearn": partial(theirs, data[:n])},
                                        repeats if n == 1 else max(3, repeats // 5))
                arr, dic, ref = t["arrays"], t["dicts"], t["sklearn"]
                print(f"| {name} | {n:,} | {_ms(arr)} | {_ms(dic)} | {_ms(ref)} | {arr / ref:.2f} | {dic / ref:.2f} |",
                      flush=True)
    print("\n| model type (no scikit-learn counterpart) | rows | mlupdate ms | ms per row |")
    print("|---|---:|---:|---:|")
    for name, model, make in _no_sklearn_cases():
        for n in ROWS:
            batch = make(n)
            ours, _ = _time(partial(model.predict_batch, batch), None, repeats if n == 1 else max(3, repeats // 5))
            print(f"| {name} | {len(batch):,} | {_ms(ours)} | {_ms(ours / len(batch))} |", flush=True)


if __name__ == "__main__":
    main()
