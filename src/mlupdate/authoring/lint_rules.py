"""Core ML's updatable-neural-network validator, rule by rule, as :class:`Problem` lists.

Sources: coremltools ``mlmodel/src/Validation/NeuralNetwork/UpdatableNeuralNetworkValidator.cpp``,
``NeuralNetworkValidatorGraph.hpp``, ``ParameterValidator.cpp`` and ``Comparison.cpp``. Where Core ML
stops at the first error, lint reports every one it finds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlupdate.authoring import netgraph as ng
from mlupdate.spec.model_types import UPDATABLE_LAYERS, network_of
from mlupdate.spec.params import outside_domain, snake
from mlupdate.spec.validate import loss_target_problems


@dataclass(frozen=True)
class Problem:
    """One thing Core ML would reject (``error``) or that is probably a mistake (``warning``).

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        rule: Short rule id (``cce-input``, ``backprop``, ``training-inputs``, ...).
        message: What is wrong, naming the layer, and how to fix it.
        layer: The layer (or loss layer) concerned, if any.
    """

    severity: str
    rule: str
    message: str
    layer: str | None = None

    def __str__(self) -> str:
        return f"{self.severity}: [{self.rule}] {self.message}"


def _err(rule: str, message: str, layer: str | None = None) -> Problem:
    return Problem("error", rule, message, layer)


REMAKE = "Re-run mlupdate make-updatable (mlupdate.make_updatable), which sets it up correctly."


# -- parameters (ParameterValidator.cpp) ----------------------------------------------------------------
def int64_problems(name: str, p: Any, positive: bool, rule: str) -> list[Problem]:
    """``validateInt64Parameter``."""
    out: list[Problem] = []
    d = int(p.defaultValue)
    if positive and d <= 0:
        out.append(_err(rule, f"Default value ({d}) of '{name}' must be positive. Set it to 1 or more."))
    which = p.WhichOneof("AllowedValues")
    if which == "set":
        values = [int(v) for v in p.set.values]
        bad = [v for v in values if v <= 0] if positive else []
        if bad:
            out.append(_err(rule, f"Allowed values {values} of '{name}' hold non-positive values {bad}; remove them."))
        if d not in values:
            out.append(_err(rule, f"Default value ({d}) of '{name}' is not in its allowed set {values}; add it to "
                                  "the set or change the default."))
    elif which == "range":
        lo, hi = int(p.range.minValue), int(p.range.maxValue)
        if positive and (lo <= 0 or hi <= 0):
            out.append(_err(rule, f"Allowed range [{lo}, {hi}] of '{name}' must be positive; raise its bounds to 1 "
                                  "or more."))
        if not lo <= d <= hi:
            out.append(_err(rule, f"Default value ({d}) of '{name}' is outside its allowed range [{lo}, {hi}]; "
                                  "change the default or the range."))
        if lo > hi:
            out.append(_err(rule, f"Allowed range of '{name}' has min {lo} > max {hi}; swap them."))
    return out


def double_problems(name: str, p: Any, rule: str = "parameter") -> list[Problem]:
    """``validateDoubleParameter``."""
    if p.WhichOneof("AllowedValues") == "range":
        lo, hi, d = p.range.minValue, p.range.maxValue, p.defaultValue
        if not lo <= d <= hi:
            return [_err(rule, f"Default value ({d}) of '{name}' is outside its allowed range [{lo}, {hi}]; change "
                               "the default or the range.")]
    return []


# -- feature types (Comparison.cpp) -----------------------------------------------------------------
def types_equal(a: Any, b: Any) -> bool:
    """Core ML's ``FeatureType`` equality (``isOptional`` ignored)."""
    ka, kb = a.WhichOneof("Type"), b.WhichOneof("Type")
    if ka != kb:
        return False
    if ka == "multiArrayType":
        x, y = a.multiArrayType, b.multiArrayType
        if x.dataType != y.dataType:
            return False
        flex_x, flex_y = x.WhichOneof("ShapeFlexibility"), y.WhichOneof("ShapeFlexibility")
        if _rank(x) != _rank(y):
            return False
        return bool(flex_x or flex_y) or list(x.shape) == list(y.shape)
    if ka == "dictionaryType":
        return a.dictionaryType.WhichOneof("KeyType") == b.dictionaryType.WhichOneof("KeyType")
    if ka == "imageType":
        x, y = a.imageType, b.imageType
        return (x.width, x.height, x.colorSpace) == (y.width, y.height, y.colorSpace)
    if ka == "sequenceType":
        return a.sequenceType.WhichOneof("Type") == b.sequenceType.WhichOneof("Type")
    return True


def _rank(m: Any) -> int:
    flex = m.WhichOneof("ShapeFlexibility")
    if flex == "enumeratedShapes":
        return len(m.enumeratedShapes.shapes[0].shape) if m.enumeratedShapes.shapes else 0
    if flex == "shapeRange":
        return len(m.shapeRange.sizeRanges)
    return len(m.shape)


def _equivalent(a: Any, b: Any) -> bool:
    return a.name == b.name and types_equal(a.type, b.type)


# -- the network rules --------------------------------------------------------------------------------
def network_problems(spec: Any) -> list[Problem]:
    """Every rule of Core ML's updatable-network validator, for an updatable neural network."""
    nn = network_of(spec)
    out = _layer_support(nn)
    out += _names(nn)
    out += _losses(nn)
    out += _optimizer(nn.updateParams)
    out += _top_level(nn.updateParams)
    out += _backprop(nn)
    out += training_input_problems(spec, nn)
    out += [_err("loss-target-shape", msg) for msg in loss_target_problems(spec)]
    return out


def _layer_support(nn: Any) -> list[Problem]:
    out: list[Problem] = []
    updatable = [layer for layer in nn.layers if layer.isUpdatable]
    if not updatable:
        out.append(_err("no-updatable-layer", "The model is marked updatable but none of its layers is. Mark the "
                                              "innerProduct/convolution layers to train. " + REMAKE))
    for layer in updatable:
        kind = ng.kind_of(layer)
        if kind not in UPDATABLE_LAYERS:
            hint = (" mlupdate make-updatable rewrites a batchedMatmul with constant weights as innerProduct."
                    if kind == "batchedMatmul" else " Clear its isUpdatable flag.")
            out.append(_err("updatable-layer-type", f"Layer '{layer.name}' ({kind}) is marked updatable, but Core ML "
                                                    f"can only update convolution and innerProduct layers.{hint}",
                            layer.name))
            continue
        typed = getattr(layer, kind)
        if not typed.weights.isUpdatable or (typed.hasBias and not typed.bias.isUpdatable):
            which = "weights" if not typed.weights.isUpdatable else "bias"
            out.append(_err("weights-not-updatable", f"Layer '{layer.name}' is updatable but its {which} are not "
                                                     "marked updatable; set isUpdatable on both its weights and its "
                                                     "bias. " + REMAKE, layer.name))
        why = ng.weight_format_problem(layer)
        if why:
            out.append(_err("weight-format", f"Layer '{layer.name}' is updatable but {why}; Core ML only updates "
                                             "float32 weights. Re-export the model without weight quantization.",
                            layer.name))
    return out


def _names(nn: Any) -> list[Problem]:
    counts = Counter([layer.name for layer in nn.layers] + [loss.name for loss in nn.updateParams.lossLayers])
    return [_err("name-collision", f"The name '{n}' is used by {c} layers or loss layers; Core ML needs unique "
                                   "names. Rename all but one.", n) for n, c in counts.items() if c > 1]


def _loss_body(loss: Any) -> tuple[str | None, Any]:
    which = loss.WhichOneof("LossLayerType")
    kind = {"categoricalCrossEntropyLossLayer": "cce", "meanSquaredErrorLossLayer": "mse"}.get(which or "")
    return kind, getattr(loss, which) if which else None


def _losses(nn: Any) -> list[Problem]:
    losses = list(nn.updateParams.lossLayers)
    if not losses:
        return [_err("loss-count", "The updatable model has no loss layer; add one categorical cross-entropy or "
                                   "mean squared error loss. " + REMAKE)]
    out: list[Problem] = []
    if len(losses) > 1:
        out.append(_err("loss-count", f"The model has {len(losses)} loss layers "
                                      f"({', '.join(x.name for x in losses)}); Core ML supports exactly one. "
                                      "Keep one."))
    prod = ng.producers(nn.layers)
    for loss in losses:
        kind, body = _loss_body(loss)
        if kind is None:
            out.append(_err("loss-type", f"Loss layer '{loss.name}' has no loss type; use categorical cross-entropy "
                                         "or mean squared error.", loss.name))
            continue
        src = prod.get(body.input)
        src_layer = nn.layers[src] if src is not None else None
        if kind == "cce" and (src_layer is None or ng.kind_of(src_layer) != "softmax"):
            if src_layer is not None and ng.kind_of(src_layer) == "softmaxND":
                fix = (f"It comes from softmaxND '{src_layer.name}'; mlupdate make-updatable rewrites a final "
                       "softmaxND as softmax without changing predictions.")
            elif src_layer is None:
                fix = "No layer produces it; point the loss at the output of the final softmax layer."
            else:
                fix = (f"It comes from {ng.kind_of(src_layer)} '{src_layer.name}'; point the loss at the output of a "
                       "softmax layer (add one if the network outputs raw scores).")
            out.append(_err("cce-input", f"The input '{body.input}' of cross-entropy loss '{loss.name}' is not the "
                                         f"output of a softmax layer. {fix}", loss.name))
        if kind == "mse" and src_layer is None:
            out.append(_err("mse-input", f"The input '{body.input}' of MSE loss '{loss.name}' is not computed by "
                                         "any layer; point it at a layer output.", loss.name))
        if body.target in prod:
            out.append(_err("loss-target", f"The target '{body.target}' of loss '{loss.name}' is computed inside the "
                                           f"network (by layer '{nn.layers[prod[body.target]].name}'); the target "
                                           "must come from the training data. Rename the target.", loss.name))
    return out


def _optimizer(up: Any) -> list[Problem]:
    which = up.optimizer.WhichOneof("OptimizerType")
    if which is None:
        return [_err("optimizer", "No optimizer is set; set SGD or Adam (e.g. --sgd lr=0.01,batch=8). " + REMAKE)]
    opt = getattr(up.optimizer, which)
    label = "SGD" if which == "sgdOptimizer" else "Adam"
    required = ["learningRate", "miniBatchSize"] + ([] if which == "sgdOptimizer" else ["beta1", "beta2", "eps"])
    out: list[Problem] = []
    for key in required:
        if not opt.HasField(key):
            out.append(_err("optimizer", f"The {label} optimizer has no {key} parameter; Core ML requires it. "
                                         + REMAKE))
        elif key == "miniBatchSize":
            out += int64_problems(key, opt.miniBatchSize, True, "mini-batch-size")
        else:
            out += double_problems(key, getattr(opt, key))
    if which == "sgdOptimizer" and opt.HasField("momentum"):
        out += [Problem("warning", p.rule, p.message) for p in double_problems("momentum", opt.momentum)]
    for key in ("learningRate", "momentum") if which == "sgdOptimizer" else ("learningRate", "beta1", "beta2", "eps"):
        if opt.HasField(key):
            out += _domain_problems(label, key, getattr(opt, key))
    return out


def _domain_problems(label: str, key: str, p: Any) -> list[Problem]:
    """A default no optimizer can run with (Core ML's validator only compares it with the declared range)."""
    what = outside_domain(snake(key), p.defaultValue)
    if what is None:
        return []
    return [_err("optimizer-value", f"The {label} optimizer's {key} default is {p.defaultValue}; it must be {what} "
                                    "for the optimizer to compute an update. Set a default in that domain (and a "
                                    "range inside it). " + REMAKE)]


def _top_level(up: Any) -> list[Problem]:
    out: list[Problem] = []
    if not up.HasField("epochs"):
        out.append(_err("epochs", "The update parameters have no epochs; Core ML requires a default number of "
                                  "epochs. " + REMAKE))
    else:
        out += int64_problems("epochs", up.epochs, True, "epochs")
    if up.HasField("seed"):
        out += int64_problems("seed", up.seed, False, "parameter")
    return out


def _backprop(nn: Any) -> list[Problem]:
    losses = []
    for loss in nn.updateParams.lossLayers:
        kind, body = _loss_body(loss)
        if kind is not None:
            losses.append((loss.name, kind, body.input))
    found = ng.backprop_blocker(nn.layers, losses)
    if found is None:
        return []
    blocker, updatable = found
    kind = next(ng.kind_of(x) for x in nn.layers if x.name == blocker)
    hint = {"reshapeStatic": " mlupdate make-updatable removes reshapes that do not change the data layout.",
            "softmaxND": " mlupdate make-updatable rewrites a final softmaxND as softmax.",
            "batchedMatmul": " mlupdate make-updatable rewrites a constant-weight batchedMatmul as innerProduct."}
    return [_err("backprop", f"Layer '{blocker}' ({kind}) lies between updatable layer '{updatable}' and the loss, "
                             "and Core ML cannot back-propagate through it (only convolution, innerProduct, flatten, "
                             "pooling, batchnorm, reshape and ReLU/sigmoid/tanh activations). Train only layers after "
                             f"it, or replace it.{hint.get(kind, '')}", blocker)]


def training_input_problems(spec: Any, nn: Any) -> list[Problem]:
    """``validateTrainingInputs``: the training inputs name a prediction input and the loss target."""
    d = spec.description
    rule = "training-inputs"
    tis = list(d.trainingInput)
    if len(tis) <= 1:
        return [_err(rule, f"The model declares {len(tis)} training input(s); Core ML needs both the model's "
                           "input(s) and the loss target. " + REMAKE)]
    exclusive = [t for t in tis if not any(_equivalent(t, i) for i in d.input)]
    if not exclusive:
        return [_err(rule, "Every training input is a prediction input; add the loss target (for a classifier, "
                           f"'{d.predictedFeatureName}'). " + REMAKE)]
    if len(tis) == len(exclusive):
        return [_err(rule, "No training input matches a prediction input by name and type; add the model's inputs "
                           "to the training inputs. " + REMAKE)]
    target = ""
    if nn.updateParams.lossLayers:
        _, body = _loss_body(nn.updateParams.lossLayers[0])
        target = body.target if body is not None else ""
    classifier = spec.WhichOneof("Type") == "neuralNetworkClassifier"
    ok = False
    for t in exclusive:
        if classifier and t.name == d.predictedFeatureName:
            for o in d.output:
                if o.name == t.name:
                    if not types_equal(t.type, o.type):
                        want = "Int64" if o.type.WhichOneof("Type") == "int64Type" else "String"
                        got = "Int64" if t.type.WhichOneof("Type") == "int64Type" else "String"
                        return [_err(rule, f"Training input '{t.name}' is of type {got} but the classifier's labels "
                                           f"are {want}; make it {want}.")]
                    ok = True
                    break
        if t.name == target:
            ok = True
    if not ok:
        if classifier:
            return [_err(rule, f"The training inputs do not include the classifier's target '{d.predictedFeatureName}'"
                               f" (or the loss target '{target}'). " + REMAKE)]
        return [_err(rule, f"The training inputs do not include the loss target '{target}'. " + REMAKE)]
    return []
