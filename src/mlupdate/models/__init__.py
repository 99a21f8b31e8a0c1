"""The non-network Core ML model types, run with numpy.

The classic ones (GLMs, SVMs, tree ensembles, encoders, transforms) and the item-similarity
recommender, non-maximum suppression, class confidence thresholding and VGGish sound preprocessing.
:data:`PROGRAMS` maps each of them to the module and class that runs it (imported only when a model of
that type is loaded); :func:`program_for` builds the program for a spec. Linked models
(:mod:`mlupdate.models.linked`) need the folder of the file being loaded, so
``mlupdate.runtime.model.build_program`` builds them itself. :data:`REFUSED` says why each remaining
type of ``Model.proto`` is not run, and what to use instead.
"""

from __future__ import annotations

import importlib
from typing import Any

PROGRAMS: dict[str, tuple[str, str]] = {
    "glmRegressor": ("glm", "GLMRegressorProgram"),
    "glmClassifier": ("glm", "GLMClassifierProgram"),
    "supportVectorRegressor": ("svm", "SupportVectorRegressorProgram"),
    "supportVectorClassifier": ("svm", "SupportVectorClassifierProgram"),
    "treeEnsembleRegressor": ("trees", "TreeEnsembleRegressorProgram"),
    "treeEnsembleClassifier": ("trees", "TreeEnsembleClassifierProgram"),
    "oneHotEncoder": ("encoders", "OneHotEncoderProgram"),
    "dictVectorizer": ("encoders", "DictVectorizerProgram"),
    "featureVectorizer": ("encoders", "FeatureVectorizerProgram"),
    "categoricalMapping": ("encoders", "CategoricalMappingProgram"),
    "scaler": ("transforms", "ScalerProgram"),
    "imputer": ("transforms", "ImputerProgram"),
    "normalizer": ("transforms", "NormalizerProgram"),
    "arrayFeatureExtractor": ("transforms", "ArrayFeatureExtractorProgram"),
    "identity": ("transforms", "IdentityProgram"),
    "itemSimilarityRecommender": ("recommender", "ItemSimilarityRecommenderProgram"),
    "nonMaximumSuppression": ("nms", "NonMaximumSuppressionProgram"),
    "classConfidenceThresholding": ("thresholding", "ClassConfidenceThresholdingProgram"),
    "soundAnalysisPreprocessing": ("sound", "SoundAnalysisPreprocessingProgram"),
}

_APPLE = "it runs Apple's {} framework, which exists only on Apple's systems"
_NL = _APPLE.format("NaturalLanguage") + ("; for a Create ML {} train an open model in PyTorch and "
                                          "mlupdate.convert it (with a tokenizer outside the model)")
REFUSED: dict[str, str] = {
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


def program_for(spec: Any) -> Any:
    """The program that runs ``spec``, a model of one of the :data:`PROGRAMS` types.

    Raises:
        SpecError: If the spec is inconsistent (each program validates its spec when built).
        UnsupportedModelError: For a variant Core ML documents no meaning for.
    """
    module, name = PROGRAMS[spec.WhichOneof("Type")]
    return getattr(importlib.import_module(f"mlupdate.models.{module}"), name)(spec)
