"""edgeopt: make trained neural networks fit and run fast on edge devices, with the evidence to choose.

The API is loaded lazily so that ``import edgeopt`` (and ``edgeopt --help``) stays instant.
Step configs (``edgeopt.Int8(calibration="percentile")``, ``edgeopt.Prune(sparsity=0.5)``...)
and the run records (``edgeopt.Run``, ``edgeopt.Variant``) are importable from here too.
"""
from __future__ import annotations

__version__ = "0.1.0"
_API = ["load_model", "load_data", "profile", "bench", "optimize", "search", "UserError"]
_CONFIGS = ["Float32", "Dynamic", "Float16", "Int8", "Int16x8", "Int4Weights", "Mixed", "Prune",
            "PruneStructured", "Cluster", "QAT", "Distill"]
_TYPES = ["Run", "Variant", "Metrics", "GraphSummary", "Provenance"]
__all__ = _API + _CONFIGS + _TYPES


def __getattr__(name: str):
    if name in _API:
        from edgeopt import api

        return getattr(api, name)
    if name in _CONFIGS:
        from edgeopt.techniques import configs

        return getattr(configs, name)
    if name in _TYPES:
        from edgeopt.core import types

        return getattr(types, name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
