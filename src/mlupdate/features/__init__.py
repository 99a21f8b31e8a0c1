"""Turning user features into tensors (images, arrays) and network outputs into Core ML results."""
