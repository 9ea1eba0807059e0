"""Tools beside the product: benchmarks, the reliability soak, the TLS fuzzer and the notebooks' analysis."""
