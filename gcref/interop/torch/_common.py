"""What every part of :mod:`gcref.interop.torch` shares: the torch import and the error type."""

from __future__ import annotations

try:
    import torch  # noqa: F401
    from torch import nn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without torch
    raise ImportError("gcref.interop.torch needs PyTorch, an optional dependency of gcref "
                      "(pip install torch); the rest of gcref works without it") from err

__all__ = ["UnsupportedModuleError", "join"]


class UnsupportedModuleError(ValueError):
    """A module (named by its path in the model) or a traced operation (named by its graph node
    and source line) that gcref cannot represent."""


def join(path: str, name: str) -> str:
    """``path.name`` (``name`` alone at the root)."""
    return f"{path}.{name}" if path else name
