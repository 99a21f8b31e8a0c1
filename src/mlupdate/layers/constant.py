"""constant layers (filled in by their family module)."""
