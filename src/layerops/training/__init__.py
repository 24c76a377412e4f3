"""The training layer: data → validation → cleaning → split → candidates → selection → bundle.

Import `layerops.training.pipeline.train` to run a spec; the submodules are its steps.
"""
