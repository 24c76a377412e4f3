"""The layerops version (a ground module: any layer may read it without importing the package API)."""

__version__ = "0.2.0"
