"""Authoring: make models updatable (with repairs), lint them like Core ML, convert and build them.

Public entry points (re-exported lazily from :mod:`mlupdate`): ``make_updatable``, ``SGD``, ``Adam``,
``lint`` and ``Problem``.
"""
