"""hakfuzz: differential fuzzing and parallel stress testing of the hakmem allocator.

The import package is assembled from three source directories: ``hakfuzz``
(this directory, ``fuzz/``: program format, engines, oracles, CLI),
``hakfuzz.model`` (``model/``: the executable reference model) and
``hakfuzz.native`` (``native/``: the C allocator and its cffi build).

Keep this module light: ``hakfuzz --help`` imports it.
"""

from importlib import metadata as _metadata

try:
    __version__: str = _metadata.version("hakfuzz")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
