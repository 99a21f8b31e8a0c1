"""The classic Core ML model types (GLMs, SVMs, tree ensembles, encoders, transforms), run with numpy.

:data:`PROGRAMS` maps each supported ``Model.Type`` name to the module and class that runs it (imported
only when a model of that type is loaded); :func:`program_for` builds the program for a spec.
:data:`REFUSED` says why each remaining type of ``Model.proto`` is not run.
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
}

_APPLE = "runs one of Apple's own frameworks ({}), which exist only on Apple's systems"
REFUSED: dict[str, str] = {
    "mlProgram": "Core ML cannot update ML Programs on device; convert with convert_to='neuralnetwork'",
    "linkedModel": "refers to a compiled .mlmodelc on an Apple device; put the referenced model in the pipeline",
    "customModel": "runs app code (an Objective-C class) that only the app that ships the model has",
    "serializedModel": "holds bytes in a private format that only Apple's frameworks read",
    "textClassifier": _APPLE.format("NaturalLanguage"),
    "wordTagger": _APPLE.format("NaturalLanguage"),
    "gazetteer": _APPLE.format("NaturalLanguage"),
    "wordEmbedding": _APPLE.format("NaturalLanguage"),
    "visionFeaturePrint": _APPLE.format("Vision; its weights ship with the OS"),
    "audioFeaturePrint": _APPLE.format("SoundAnalysis; its weights ship with the OS"),
    "soundAnalysisPreprocessing": _APPLE.format("SoundAnalysis"),
    "bayesianProbitRegressor": "not implemented yet",
    "itemSimilarityRecommender": "not implemented yet",
    "nonMaximumSuppression": "not implemented yet",
    "classConfidenceThresholding": "not implemented yet",
}


def program_for(spec: Any) -> Any:
    """The program that runs ``spec``, a model of one of the :data:`PROGRAMS` types.

    Raises:
        SpecError: If the spec is inconsistent (each program validates its spec when built).
        UnsupportedModelError: For a variant Core ML documents no meaning for.
    """
    module, name = PROGRAMS[spec.WhichOneof("Type")]
    return getattr(importlib.import_module(f"mlupdate.models.{module}"), name)(spec)
