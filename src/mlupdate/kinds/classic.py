"""The classic model types, run with numpy: one entry per type, each run by its module in :mod:`mlupdate.models`.

GLMs, SVMs, tree ensembles, encoders, transforms, the item-similarity recommender, non-maximum suppression,
class confidence thresholding and VGGish sound preprocessing. Core ML does not update them; their lint
rules are the shared ones. Each module is imported only when a model of its type is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlupdate.kinds.registry import Build, Kind, register

#: Each classic type's module in :mod:`mlupdate.models` and the class that runs it.
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


def _program(spec: Any, build: Build) -> Any:
    """The program that runs ``spec``, a model of one of the :data:`PROGRAMS` types.

    Raises:
        SpecError: If the spec is inconsistent (each program validates its spec when built).
        UnsupportedModelError: For a variant Core ML documents no meaning for.
    """
    module, name = PROGRAMS[spec.WhichOneof("Type")]
    return getattr(importlib.import_module(f"mlupdate.models.{module}"), name)(spec)


for _name in PROGRAMS:
    register(Kind(_name, "classic", program=_program))
