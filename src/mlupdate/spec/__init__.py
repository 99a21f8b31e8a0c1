"""Reading, writing, describing and validating Core ML specifications."""

from mlupdate.spec.io import copy_spec, read_spec, resolve_spec, write_bytes_atomic, write_spec

__all__ = ["copy_spec", "read_spec", "resolve_spec", "write_bytes_atomic", "write_spec"]
