"""The monitoring layer: prediction log, ground-truth feedback, drift and performance, reports.

Imports `bundle` and `repository.api` only (never `delivery`, `training` or `mlflow`). The server
feeds it through an observer of `InferenceService.infer`; the CLI reads what it wrote.
"""
