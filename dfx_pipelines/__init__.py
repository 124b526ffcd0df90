"""DataFlow-Xpert pipelines."""
