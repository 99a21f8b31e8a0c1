"""The types of ``Model.proto`` that mlupdate does not run, each with the reason and what to use instead."""

from __future__ import annotations

from mlupdate.kinds.registry import Kind, register

_APPLE = "it runs Apple's {} framework, which exists only on Apple's systems"
_NL = _APPLE.format("NaturalLanguage") + ("; for a Create ML {} train an open model in PyTorch and "
                                          "mlupdate.convert it (with a tokenizer outside the model)")
#: Why each type is refused (its entry's :attr:`~mlupdate.kinds.registry.Kind.refusal`).
REASONS: dict[str, str] = {
    "customModel": ("it runs app code (the Objective-C class named by its className) that only the app shipping the "
                    "model has; rebuild what that class computes as a neural network (mlupdate.convert) or "
                    "classic model"),
    "serializedModel": ("it holds bytes in a private format that only Apple's frameworks read; export the source "
                        "model again as a neural network (coremltools convert_to='neuralnetwork' or "
                        "mlupdate.convert)"),
    "textClassifier": _NL.format("text classifier"),
    "wordTagger": _NL.format("word tagger"),
    "gazetteer": _APPLE.format("NaturalLanguage") + "; look the words up in the app, or in a categoricalMapping",
    "wordEmbedding": _APPLE.format("NaturalLanguage") + ("; export the vectors as an embedding layer of a neural "
                                                         "network (mlupdate.convert a torch.nn.Embedding)"),
    "visionFeaturePrint": _APPLE.format("Vision") + (" and whose weights ship with the OS; for a Create ML image "
                                                     "classifier (visionFeaturePrint + glmClassifier) mlupdate.convert "
                                                     "an open backbone (e.g. EfficientNet-Lite0, the demo's) with a "
                                                     "k-NN (mlupdate.knn_classifier, mlupdate.pipeline_classifier) or "
                                                     "dense head, and retrain the head"),
    "audioFeaturePrint": _APPLE.format("SoundAnalysis") + (" and whose weights ship with the OS; for a Create ML "
                                                           "sound classifier export the older VGGish form "
                                                           "(soundAnalysisPreprocessing + a neural network, which "
                                                           "mlupdate runs) or mlupdate.convert an open audio network"),
    "bayesianProbitRegressor": ("its proto does not define the computation: no field holds the link's scale beta of "
                                "P = Phi(<w,x>/beta), nothing says how the multiarray input maps to feature ids and "
                                "values, and the 'sampled probability' output is random; Core ML's implementation is "
                                "not public. Use a glmClassifier with Probit (the posterior means as weights)"),
}


for _name, _why in REASONS.items():
    register(Kind(_name, "refused", refusal=_why))
