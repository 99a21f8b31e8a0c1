"""random_bernoulli, random_categorical, random_normal, random_uniform (MIL random.py)."""

from __future__ import annotations
