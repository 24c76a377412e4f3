"""layerops: from a tabular data file to a registered model and a production endpoint."""

__all__ = ["__version__"]

__version__ = "0.1.0"
