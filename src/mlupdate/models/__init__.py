"""The non-network Core ML model types, run with numpy: one module per family.

The classic ones (GLMs, SVMs, tree ensembles, encoders, transforms) and the item-similarity
recommender, non-maximum suppression, class confidence thresholding and VGGish sound preprocessing.
Which class runs which type is declared in :mod:`mlupdate.kinds.classic`.
"""
