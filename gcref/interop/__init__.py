"""Conversions between gcref networks and other frameworks' models.

``gcref.interop.torch`` (needs PyTorch, an optional dependency): ``from_torch`` turns a
``torch.nn.Module`` into a gcref :class:`~gcref.nn.Network` and its float64 parameter dict, and
``to_torch`` goes back. Importing :mod:`gcref` or this package never imports torch.
"""

__all__: list[str] = []
