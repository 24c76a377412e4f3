"""HTTP transports: thin adapters that parse, call the inference service, and format."""
