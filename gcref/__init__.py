"""gcref: geometric complexity and neural collapse, computable and checkable (reference backend)."""

__version__ = "0.1.0"
