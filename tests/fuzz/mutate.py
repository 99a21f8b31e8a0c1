"""Seeded mutations of valid Core ML specs: the fuzzer's inputs.

Seeds are every layer test case of the registry (every layer family), small updatable
models (dense and convolutional classifiers, an MSE regressor, a k-NN, a pipeline), the
classic types as coremltools converts them from scikit-learn, and the other model types (NMS,
recommender, sound preprocessing, confidence thresholding) as their tests build them. A mutation
changes one field somewhere in the spec (a number to 0, -1 or a huge value, a list shortened or
extended, a blob name swapped, a message cleared), removes or duplicates a layer, or damages
the serialized bytes. A third of them aim at what an outside fuzzer found slipping through
(:func:`targeted`): a repeated field emptied, a count or size made negative, a feature of another
type where an array is declared, a training input reshaped so that it disagrees with the loss, an
empty message in place of the one a oneof holds (an empty meanImage for a scaler).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

_INTS = (0, -1, 1, 2, 3, 7, 64, 2**31 - 1, -(2**31))
_FLOATS = (0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), 0.5)


@dataclass
class Seed:
    """A valid spec with example inputs and, for updatable models, training data."""

    name: str
    spec: Any
    example: dict[str, Any]
    training: list[dict[str, Any]] = field(default_factory=list)


def seeds() -> list[Seed]:
    """Every seed, in a fixed order."""
    from tests.unit import _update_models as M
    from tests.unit import test_layer_registry as registry

    out = [Seed(f"case:{c.id}", c.builder().spec, dict(c.inputs)) for c in registry.CASES]
    rng = np.random.default_rng(0)
    dense = [{"input": rng.standard_normal(4).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(6)]
    out.append(Seed("dense_classifier", M.dense_classifier(), {"input": dense[0]["input"]}, dense))
    out.append(Seed("adam_classifier", M.dense_classifier(opt="adam", updatable=("d1", "d2")),
                    {"input": dense[0]["input"]}, dense))
    reg = [{"input": rng.standard_normal(4).astype(np.float32), "out_true": rng.standard_normal(2).astype(np.float32)}
           for _ in range(6)]
    out.append(Seed("mse_regressor", M.mse_regressor(), {"input": reg[0]["input"]}, reg))
    image = M.conv_classifier(image=True)
    pre = image.neuralNetworkClassifier.preprocessing.add()
    pre.featureName, pre.scaler.channelScale = "input", 1 / 255
    photos = [{"input": rng.integers(0, 255, (6, 6), dtype=np.uint8), "label": M.LABELS[i % 3]} for i in range(3)]
    out.append(Seed("image_classifier", image, {"input": photos[0]["input"]}, photos))
    out += _knn_seeds(rng)
    out += _classic_seeds(rng)
    out += _other_type_seeds(rng)
    return out


def _other_type_seeds(rng: np.random.Generator) -> list[Seed]:
    """The NMS model, the recommender, sound preprocessing and confidence thresholding, as their tests build them."""
    from tests.unit import test_models_nms as nms
    from tests.unit import test_models_recommender as rec
    from tests.unit import test_models_sound as sound
    from tests.unit import test_models_thresholding as thresholding

    sim = (rng.random((6, 6)) < 0.5) * rng.random((6, 6))
    conf, boxes = rng.random((8, nms.C)), rng.random((8, 4))
    return [
        Seed("nms", nms._spec(), {"raw_confidence": conf, "raw_coordinates": boxes}),
        Seed("recommender", rec._spec(sim, rng.random(6)), {"items": {0: 1.0, 3: 2.0}, "k": 3}),
        Seed("sound", sound._spec(), {"audioSamples": rng.standard_normal(15600).astype(np.float32)}),
        Seed("thresholding", thresholding._spec(), {"classConfidences": rng.random(thresholding.C).astype(np.float32)}),
    ]


def _classic_seeds(rng: np.random.Generator) -> list[Seed]:
    """scikit-learn models converted by coremltools: a GLM, an SVM, trees, and a scaler + encoder pipeline."""
    import warnings

    import coremltools as ct
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    x = rng.standard_normal((40, 3))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "a", "b")
    estimators = {
        "glm_classifier": LogisticRegression(multi_class="ovr").fit(x, labels),
        "svm": SVC().fit(x, labels),
        "forest": RandomForestClassifier(3, max_depth=3, random_state=0).fit(x, labels),
        "tree_regressor": DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, x[:, 0]),
        "scaler_pipeline": make_pipeline(StandardScaler(), Normalizer(), LinearRegression()).fit(x, x[:, 1]),
    }
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, est in estimators.items():
            spec = ct.converters.sklearn.convert(est, "x", "y").get_spec()
            out.append(Seed(f"sklearn:{name}", spec, {"x": x[0]}))
    return out


def _knn_seeds(rng: np.random.Generator) -> list[Seed]:
    """An updatable k-NN (coremltools' builder) and the shared k-NN pipeline (embedding network + k-NN)."""
    from pathlib import Path

    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    from mlupdate.spec.io import read_spec

    b = KNearestNeighborsClassifierBuilder(input_name="features", output_name="label", number_of_dimensions=4,
                                           default_class_label="none", k=2)
    b.add_samples(rng.standard_normal((5, 4)), ["a", "b", "a", "b", "a"])
    b.spec.isUpdatable = True
    rows = [{"features": rng.standard_normal(4).astype(np.float32), "label": "ab"[i % 2]} for i in range(4)]
    out = [Seed("knn", b.spec, {"features": rows[0]["features"]}, rows)]
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "TinyDrawingClassifier.mlmodel"
    if shared.is_file():
        drawing = rng.integers(0, 255, (28, 28, 1), dtype=np.uint8)
        out.append(Seed("knn_pipeline", read_spec(shared), {"drawing": drawing},
                        [{"drawing": drawing, "label": "x"}, {"drawing": 255 - drawing, "label": "y"}]))
    return out


def _messages(msg: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, msg
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
        if fd.message_type.GetOptions().map_entry:
            continue
        items = list(value) if repeated else [value]
        for i, v in enumerate(items[:20]):
            yield from _messages(v, f"{path}.{fd.name}[{i}]" if repeated else f"{path}.{fd.name}")


def _blob_names(spec: Any) -> list[str]:
    names = [f.name for f in spec.description.input] + [f.name for f in spec.description.output]
    kind = spec.WhichOneof("Type")
    net = getattr(spec, kind) if kind else None
    for layer in getattr(net, "layers", []):
        names += list(layer.input) + list(layer.output)
    return names or ["x"]


def mutate(spec: Any, rng: random.Random) -> str:
    """Change ``spec`` in place in one random way; returns what was done."""
    if rng.random() < 0.3:
        done = targeted(spec, rng)
        if done:
            return done
    kind = spec.WhichOneof("Type")
    net = getattr(spec, kind) if kind else None
    layers = getattr(net, "layers", None)
    roll = rng.random()
    if layers is not None and len(layers) and roll < 0.08:
        i = rng.randrange(len(layers))
        del layers[i]
        return f"removed layer {i}"
    if layers is not None and len(layers) and roll < 0.12:
        i = rng.randrange(len(layers))
        layers.add().CopyFrom(layers[i])
        return f"duplicated layer {i}"
    messages = [(p, m) for p, m in _messages(spec) if m.DESCRIPTOR.fields]
    path, msg = rng.choice(messages)
    fd = rng.choice(msg.DESCRIPTOR.fields)
    where = f"{path}.{fd.name}"
    repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED
    if fd.message_type is not None:
        if fd.message_type.GetOptions().map_entry:
            return "no-op (map)"
        if repeated:
            value = getattr(msg, fd.name)
            if len(value) and rng.random() < 0.6:
                del value[rng.randrange(len(value))]
                return f"removed an item of {where}"
            value.add()
            return f"appended an empty item to {where}"
        msg.ClearField(fd.name)
        return f"cleared {where}"
    new = _value(fd, rng, _blob_names(spec))
    if repeated:
        value = getattr(msg, fd.name)
        choice = rng.random()
        try:
            if choice < 0.3 and len(value):
                del value[rng.randrange(len(value))]
                return f"removed an item of {where}"
            if choice < 0.6:
                value.append(new)
                return f"appended {new!r} to {where}"
            if len(value):
                value[rng.randrange(len(value))] = new
                return f"set an item of {where} to {new!r}"
            value.append(new)
            return f"appended {new!r} to {where}"
        except (TypeError, ValueError):
            return "no-op (type)"
    try:
        setattr(msg, fd.name, new)
    except (TypeError, ValueError):
        return "no-op (type)"
    return f"set {where} = {new!r}"


def _value(fd: Any, rng: random.Random, blobs: list[str]) -> Any:
    t = fd.type
    if t == fd.TYPE_BOOL:
        return rng.random() < 0.5
    if t == fd.TYPE_STRING:
        return rng.choice([*blobs, "", "no_such_blob"])
    if t == fd.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 16))))
    if t == fd.TYPE_ENUM:
        return rng.choice(fd.enum_type.values).number
    if t in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        return rng.choice(_FLOATS)
    value = rng.choice(_INTS)
    if t in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_FIXED32, fd.TYPE_FIXED64):
        value = abs(value) % (2**32)
    return value


def damage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Damaged serialized bytes: truncated or with flipped bytes."""
    if rng.random() < 0.5 and len(data) > 1:
        n = rng.randrange(1, len(data))
        return data[:n], f"truncated to {n} bytes"
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out), "flipped bytes"


_COUNT = re.compile(r"(?i)(num|count|size|channels|dimension|length|rank|axis|^k$|^n[A-Z])")
_SIGNED = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT32,
           FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_SFIXED64}
_OTHER_TYPES = ("int64Type", "doubleType", "stringType", "dictionaryType", "imageType", "sequenceType",
                "multiArrayType")


def targeted(spec: Any, rng: random.Random) -> str | None:
    """One of the mutations aimed at the bad-file class; None when the spec has nothing to aim at."""
    kinds = [_empty_repeated, _negative_count, _other_feature_type, _reshape_training_input, _other_oneof]
    rng.shuffle(kinds)
    for kind in kinds:
        done = kind(spec, rng)
        if done:
            return done
    return None


def _fields(spec: Any, want: Any) -> list[tuple[str, Any, Any]]:
    """``(path, message, field)`` for every set field (repeated ones non-empty) that ``want(field)`` accepts."""
    out = []
    for path, msg in _messages(spec):
        for fd, _value in msg.ListFields():
            if want(fd):
                out.append((path, msg, fd))
    return out


def _is_repeated(fd: Any) -> bool:
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED


def _empty_repeated(spec: Any, rng: random.Random) -> str | None:
    found = _fields(spec, lambda fd: _is_repeated(fd) and not (fd.message_type and fd.message_type.GetOptions()
                                                                 .map_entry))
    if not found:
        return None
    path, msg, fd = rng.choice(found)
    del getattr(msg, fd.name)[:]
    return f"emptied {path}.{fd.name}"


def _negative_count(spec: Any, rng: random.Random) -> str | None:
    found = _fields(spec, lambda fd: fd.type in _SIGNED and _COUNT.search(fd.name) is not None)
    if not found:
        return None
    path, msg, fd = rng.choice(found)
    value = rng.choice((-1, -2, -7, -(2**31)))
    if _is_repeated(fd):
        items = getattr(msg, fd.name)
        items[rng.randrange(len(items))] = value
    else:
        setattr(msg, fd.name, value)
    return f"set {path}.{fd.name} to {value}"


def _features(spec: Any) -> list[tuple[str, Any]]:
    d = spec.description
    return [(f"{group}[{i}] '{f.name}'", f) for group in ("input", "output", "trainingInput")
            for i, f in enumerate(getattr(d, group))]


def _other_feature_type(spec: Any, rng: random.Random) -> str | None:
    arrays = [(w, f) for w, f in _features(spec) if f.type.WhichOneof("Type") in ("multiArrayType", "imageType")]
    if not arrays:
        return None
    where, f = rng.choice(arrays)
    new = rng.choice([t for t in _OTHER_TYPES if t != f.type.WhichOneof("Type")])
    same_name = [g for _, g in _features(spec) if g.name == f.name] if rng.random() < 0.5 else [f]
    for g in same_name:  # the input and its training twin together, or only one of them
        g.type.ClearField(g.type.WhichOneof("Type") or "multiArrayType")
        typed = getattr(g.type, new)
        if new == "dictionaryType":
            getattr(typed, rng.choice(("stringKeyType", "int64KeyType"))).SetInParent()
        elif new == "sequenceType":
            typed.int64Type.SetInParent()
        elif new == "imageType":
            typed.width, typed.height, typed.colorSpace = 4, 4, 10
        elif new == "multiArrayType":
            typed.shape.append(rng.choice((1, 3)))
            typed.dataType = 65568  # FLOAT32
        else:
            typed.SetInParent()
    return f"made {where} a {new}" + (" (with its twins)" if len(same_name) > 1 else "")


def _reshape_training_input(spec: Any, rng: random.Random) -> str | None:
    arrays = [(i, f) for i, f in enumerate(spec.description.trainingInput)
              if f.type.WhichOneof("Type") == "multiArrayType"]
    if not arrays:
        return None
    i, f = rng.choice(arrays)
    shape = f.type.multiArrayType.shape
    roll = rng.random()
    if roll < 0.3 or not len(shape):
        shape.append(rng.choice((1, 2, 3)))
    elif roll < 0.5 and len(shape) > 1:
        del shape[rng.randrange(len(shape))]
    else:
        j = rng.randrange(len(shape))
        shape[j] = rng.choice([v for v in (1, 2, 3, 4, 5) if v != shape[j]])
    return f"reshaped trainingInput[{i}] '{f.name}' to {list(shape)}"


def _other_oneof(spec: Any, rng: random.Random) -> str | None:
    found = []
    for path, msg in _messages(spec):
        for oneof in msg.DESCRIPTOR.oneofs:
            current = msg.WhichOneof(oneof.name)
            others = [fd for fd in oneof.fields if fd.message_type is not None and fd.name != current]
            if current is not None and others:
                found.append((path, msg, rng.choice(others)))
    if not found:
        return None
    path, msg, fd = rng.choice(found)
    getattr(msg, fd.name).SetInParent()
    return f"set {path}.{fd.name} to an empty message"
