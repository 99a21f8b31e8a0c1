"""Update tasks: Core ML's ``MLUpdateTask`` for neural networks, k-NN classifiers and pipelines.

The public names (``UpdateTask``, ``UpdateContext``, ``ProgressHandlers``) live in
:mod:`mlupdate.update.task`; ``docs/update-semantics.md`` states every rule the update follows.
"""
