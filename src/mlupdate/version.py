"""The package version (one home: ``mlupdate.__version__`` and the compiled-model cache read it)."""

__version__ = "0.1.0"
