"""Safe releases: the promotion gate, traffic policies (canary, A/B, shadow) as data, the canary
analysis state machine, and release state and events kept in the repository.

Imports `bundle`, `repository.api` and `monitoring`; never `delivery`, `training` or `mlflow`.
"""
