"""The fast ops, one module per layer family; :mod:`gcref_cuda.compile` maps layer types to them."""
