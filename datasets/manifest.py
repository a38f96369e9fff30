"""Manifests: the one data format for simulated and researchers' own data.

A manifest is a CSV file.  One row per image:

==================  ========  ==============================================================
column              required  meaning
==================  ========  ==============================================================
path                yes       DICOM file, relative to the manifest's folder or absolute
patient_id          yes       patient key: splits never put one patient in two folds
hadd ... (6 cols)   yes*      0/1 per pattern (``calcdx.taxonomy.PATTERNS``); or instead a
labels              yes*      ``labels`` column, pattern names joined by ``;`` ("" = none)
study_uid           no        StudyInstanceUID (grouping, resumable outputs)
body_part           no        region (``calcdx.taxonomy.Region`` value) or DICOM body part
view                no        AP, PA, LAT, OBL ...
annotations         no        JSON file (relative or absolute) with per-lesion ground truth
any other column    no        kept in ``ManifestRow.extras`` (e.g. simulator nuisance params)
==================  ========  ==============================================================

The annotations JSON is ``{"lesions": [Lesion, ...]}`` where each lesion has ``kind``
(a pattern or hard-negative name), ``bbox_px`` [r0, c0, r1, c1], ``size_mm``
[long, short], ``location_class``, optional ``site`` and optional ``mask`` (a path to an
``.npz`` holding a boolean array ``mask`` at the image's pixel grid, or to a PNG).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calcdx.errors import ManifestError
from calcdx.taxonomy import PATTERNS, Pattern

CORE_COLUMNS: tuple[str, ...] = ("path", "patient_id", "study_uid", "body_part", "view", "annotations")


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One image of a manifest, paths resolved to absolute."""

    path: Path
    patient_id: str
    labels: frozenset[Pattern]
    study_uid: str | None = None
    body_part: str | None = None
    view: str | None = None
    annotations: Path | None = None
    extras: dict[str, str] = field(default_factory=dict)

    def label_vector(self) -> list[float]:
        """Multi-hot labels in ``PATTERNS`` order."""
        return [1.0 if p in self.labels else 0.0 for p in PATTERNS]


def _parse_flag(value: str, *, column: str, line: int, manifest: Path) -> bool:
    text = value.strip().lower()
    if text in {"1", "true", "yes", "y"}:
        return True
    if text in {"0", "false", "no", "n", ""}:
        return False
    raise ManifestError(f"line {line}: column {column!r} must be 0 or 1, got {value!r}", path=manifest)


def _parse_labels(row: dict[str, str], *, line: int, manifest: Path) -> frozenset[Pattern]:
    if all(p.value in row for p in PATTERNS):
        return frozenset(
            p for p in PATTERNS if _parse_flag(row[p.value], column=p.value, line=line, manifest=manifest)
        )
    if "labels" in row:
        names = [n.strip() for n in (row["labels"] or "").replace(",", ";").split(";") if n.strip()]
        try:
            return frozenset(Pattern(n) for n in names if n.lower() not in {"none", "negative"})
        except ValueError as exc:
            valid = ", ".join(p.value for p in PATTERNS)
            raise ManifestError(f"line {line}: unknown label in {row['labels']!r} (valid: {valid})",
                                path=manifest) from exc
    raise ManifestError(
        "needs either a 0/1 column per pattern (" + ", ".join(p.value for p in PATTERNS) + ") or a 'labels' column",
        path=manifest,
    )


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base / p)


def read_manifest(manifest: str | Path, *, check_files: bool = True) -> list[ManifestRow]:
    """Read a manifest CSV.

    Raises:
        ManifestError: missing file or column, a bad label value, a duplicated path, or
            (with ``check_files``) a row whose DICOM file does not exist; the message names
            the manifest and the line.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError("manifest file not found", path=manifest)
    base = manifest.parent
    rows: list[ManifestRow] = []
    seen: set[Path] = set()
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for required in ("path", "patient_id"):
            if required not in header:
                raise ManifestError(f"missing required column {required!r} (has: {', '.join(header)})",
                                    path=manifest)
        label_columns = {p.value for p in PATTERNS} | {"labels"}
        for line, raw in enumerate(reader, start=2):
            if not (raw.get("path") or "").strip():
                raise ManifestError(f"line {line}: empty 'path'", path=manifest)
            if not (raw.get("patient_id") or "").strip():
                raise ManifestError(f"line {line}: empty 'patient_id'", path=manifest)
            path = _resolve(base, raw["path"].strip())
            if path in seen:
                raise ManifestError(f"line {line}: duplicate path {raw['path']!r}", path=manifest)
            seen.add(path)
            if check_files and not path.is_file():
                raise ManifestError(f"line {line}: file {raw['path']!r} does not exist", path=manifest)
            ann = (raw.get("annotations") or "").strip()
            extras = {k: v for k, v in raw.items() if k not in CORE_COLUMNS and k not in label_columns and k}
            rows.append(
                ManifestRow(
                    path=path,
                    patient_id=raw["patient_id"].strip(),
                    labels=_parse_labels(raw, line=line, manifest=manifest),
                    study_uid=(raw.get("study_uid") or "").strip() or None,
                    body_part=(raw.get("body_part") or "").strip() or None,
                    view=(raw.get("view") or "").strip() or None,
                    annotations=_resolve(base, ann) if ann else None,
                    extras=extras,
                )
            )
    if not rows:
        raise ManifestError("manifest has no rows", path=manifest)
    return rows


def write_manifest(path: str | Path, rows: Iterable[ManifestRow], *, extra_columns: Sequence[str] = ()) -> Path:
    """Write rows as a manifest CSV with paths relative to its folder (created) where possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    columns = ["path", "patient_id", "study_uid", *(p.value for p in PATTERNS), "body_part", "view",
               "annotations", *extra_columns]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            record: dict[str, Any] = {
                "path": _relative(row.path, base),
                "patient_id": row.patient_id,
                "study_uid": row.study_uid or "",
                "body_part": row.body_part or "",
                "view": row.view or "",
                "annotations": _relative(row.annotations, base) if row.annotations else "",
                **{p.value: int(p in row.labels) for p in PATTERNS},
                **row.extras,
            }
            writer.writerow(record)
    tmp.replace(path)
    return path


def _relative(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base))
    except ValueError:
        return str(p)


def load_annotations(path: Path) -> list[dict[str, Any]]:
    """The ``lesions`` list of an annotations JSON file (see module docstring)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read annotations: {exc}", path=path) from exc
    lesions = data.get("lesions") if isinstance(data, dict) else None
    if not isinstance(lesions, list):
        raise ManifestError("annotations JSON must be an object with a 'lesions' list", path=path)
    return lesions


def manifest_sha256(path: str | Path) -> str:
    """sha256 of the manifest file's bytes (recorded in model cards)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
