"""edgeopt: make trained neural networks fit and run fast on edge devices, with the evidence to choose.

The API is loaded lazily so that ``import edgeopt`` (and ``edgeopt --help``) stays instant.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_model", "load_data", "profile", "bench", "optimize", "UserError"]


def __getattr__(name: str):
    if name in __all__:
        from edgeopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
