"""calcdx: soft-tissue calcifications on DICOM radiographs.

Research software, not a medical device.  The package is one import name; the
design-card folders at the repository root install as ``calcdx.datasets``,
``calcdx.models``, ``calcdx.training`` and ``calcdx.inference``.
"""

from calcdx.errors import CalcdxError
from calcdx.version import __version__

__all__ = ["CalcdxError", "__version__"]
