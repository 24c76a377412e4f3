"""The `layerops` command line: a thin shell over the layers."""
