"""calcdx.datasets: DICOM reading, study discovery, manifests, splits and the radiograph simulator.

The reader entry points are importable from here (loaded on first use, so importing the
package stays cheap)::

    from calcdx.datasets import read_radiograph, read_radiographs, discover
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY: dict[str, str] = {
    "read_radiograph": "calcdx.datasets.reader",
    "read_radiographs": "calcdx.datasets.reader",
    "discover": "calcdx.datasets.discovery",
    "DiscoveryResult": "calcdx.datasets.discovery",
    "Study": "calcdx.datasets.discovery",
    "Radiograph": "calcdx.datasets.radiograph",
    "SpacingSource": "calcdx.datasets.radiograph",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
