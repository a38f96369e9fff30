"""One error hierarchy for calcdx.

Every error carries a stable ``code`` (for CSV failure logs, HTTP bodies and DICOM
status comments) and, where there is one, the offending ``path``.  The message always
names the file or argument and the reason.

    CalcdxError
    ├── InputError                  bad input data (DICOM files, manifests)
    │   ├── NotDicomError               E_NOT_DICOM
    │   ├── NotRadiographError          E_NOT_RADIOGRAPH (CT, MR, colour, SR, ...)
    │   ├── NoPixelDataError            E_NO_PIXEL_DATA
    │   ├── TruncatedPixelDataError     E_TRUNCATED
    │   ├── UndecodableError            E_UNDECODABLE (names the missing decoder)
    │   ├── ImageTooLargeError          E_TOO_LARGE (decompression-bomb guard)
    │   ├── NestingTooDeepError         E_NESTING (sequences nested too deep)
    │   ├── CorruptDicomError           E_CORRUPT (header parses but values are absurd)
    │   └── ManifestError               E_MANIFEST
    ├── ModelIntegrityError          E_MODEL_INTEGRITY (hash mismatch, bad card)
    ├── ConfigError                  E_CONFIG
    ├── KnowledgeBaseError           E_KNOWLEDGE_BASE (rule file fails its schema)
    └── PacsError                    E_PACS
"""

from __future__ import annotations

from os import PathLike, fspath


class CalcdxError(Exception):
    """Base of every error calcdx raises on purpose.

    Args:
        message: what went wrong, in words a user can act on.
        path: the offending file, if any; it is prefixed to the message.
    """

    code: str = "E_CALCDX"

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None) -> None:
        self.path: str | None = fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-ready description: code, path and reason."""
        return {"code": self.code, "path": self.path, "reason": self.reason}


class InputError(CalcdxError):
    code = "E_INPUT"


class NotDicomError(InputError):
    code = "E_NOT_DICOM"


class NotRadiographError(InputError):
    code = "E_NOT_RADIOGRAPH"


class NoPixelDataError(InputError):
    code = "E_NO_PIXEL_DATA"


class TruncatedPixelDataError(InputError):
    code = "E_TRUNCATED"


class UndecodableError(InputError):
    code = "E_UNDECODABLE"


class ImageTooLargeError(InputError):
    code = "E_TOO_LARGE"


class NestingTooDeepError(InputError):
    code = "E_NESTING"


class CorruptDicomError(InputError):
    code = "E_CORRUPT"


class ManifestError(InputError):
    code = "E_MANIFEST"


class ModelIntegrityError(CalcdxError):
    code = "E_MODEL_INTEGRITY"


class ConfigError(CalcdxError):
    code = "E_CONFIG"


class KnowledgeBaseError(CalcdxError):
    code = "E_KNOWLEDGE_BASE"


class PacsError(CalcdxError):
    code = "E_PACS"
