"""The delivery layer: load models by alias from the repository and serve them over HTTP."""
