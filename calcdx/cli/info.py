"""``calcdx info PATH...``: what the reader saw and decided, per file and frame."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show what the reader sees in each DICOM file (syntax, LUTs, spacing, refusal reason)",
        description="Read each file like `calcdx predict` would and report the decisions: transfer "
        "syntax and decoder, LUTs applied, photometric interpretation, size, pixel spacing and its "
        "source, or the code and reason it is refused. Folders are searched recursively; DICOMDIRs "
        "and list files (.txt, one path per line) are followed.",
        epilog="examples:\n"
        "  calcdx info examples/\n"
        "  calcdx info study/DICOMDIR --default-spacing 0.1\n"
        "  calcdx info batch.txt --json > info.json\n"
        "exit code: 0 if every file (and frame) is an accepted radiograph, 1 if any was refused or none was found",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders, DICOMDIRs or list files")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of a table")
    parser.add_argument("--default-spacing", type=_spacing, default=None, metavar="MM",
                        help="spacing in mm to assume when a file has none (default 0.15, flagged 'assumed')")
    parser.add_argument("--voi", type=_voi, default="first", metavar="VOI",
                        help='VOI transform: "first" (default: first VOI LUT, else first window), "none", '
                        "or an index (VOI LUTs first, then windows)")
    parser.set_defaults(func=run)


def _voi(text: str) -> str | int:
    if text in ("first", "none"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f'should be "first", "none" or a non-negative integer, got {text!r}')


def _spacing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"should be a number of millimetres, got {text!r}") from None
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(f"should be in (0, 10] mm, got {value}")
    return value


def _header_facts(path: str) -> dict[str, Any]:
    """What the header says about a refused file, where it can be parsed at all."""
    from pydicom.uid import UID

    from calcdx.datasets.reader import header_only
    from calcdx.errors import CalcdxError

    try:
        ds = header_only(path)
    except CalcdxError:
        return {}
    facts: dict[str, Any] = {}
    try:
        facts["modality"] = str(ds.get("Modality", "") or "") or None
        sop = str(ds.get("SOPClassUID", "") or "")
        facts["sop_class"] = UID(sop).name if sop else None
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
        facts["transfer_syntax"] = UID(syntax).name if syntax else None
        facts["photometric"] = str(ds.get("PhotometricInterpretation", "") or "") or None
        facts["rows"] = int(ds.Rows) if "Rows" in ds else None
        facts["columns"] = int(ds.Columns) if "Columns" in ds else None
    except Exception:  # a corrupt value: report what was read so far
        pass
    return facts


def describe_paths(paths: list[str], *, default_spacing_mm: float | None = None,
                   voi: str | int = "first") -> list[dict[str, Any]]:
    """One record per file/frame: accepted with its facts, or refused with code and reason.

    Records follow discovery order: studies (series and instances ordered), then the further copies of an
    instance (``duplicate_of`` names the file ``calcdx predict`` analyses instead), calcdx's own SRs and
    overlays (refused as not radiographs), then the paths discovery skipped (not DICOM, missing, outside a
    DICOMDIR's root).
    """
    from pydicom.uid import UID

    from calcdx.datasets.discovery import discover
    from calcdx.datasets.reader import decoder_of, read_radiographs
    from calcdx.errors import CalcdxError

    found = discover(paths)
    records: list[dict[str, Any]] = []
    copies = [(copy, {"duplicate_of": str(kept)}) for copy, kept in found.duplicates]
    for path, extra in [*((i.path, {}) for study in found.studies for i in study.instances), *copies]:
        try:
            frames = read_radiographs(path, default_spacing_mm=default_spacing_mm, voi=voi)
        except CalcdxError as error:
            records.append({"status": "refused", "frame": None, **_header_facts(str(path)),
                            **error.as_dict(), "path": str(path), **extra})
            continue
        for r in frames:
            records.append({
                "path": str(path),
                "status": "accepted",
                "frame": r.frame_index,
                "study_uid": r.study_instance_uid,
                "sop_instance_uid": r.sop_instance_uid,
                "modality": r.modality,
                "sop_class": UID(r.sop_class_uid).name if r.sop_class_uid else None,
                "transfer_syntax": UID(r.transfer_syntax_uid).name if r.transfer_syntax_uid else None,
                "decoder": decoder_of(r),
                "photometric": r.photometric_interpretation,
                "bits_stored": r.bits_stored,
                "rows": r.shape[0],
                "columns": r.shape[1],
                "pixel_spacing_mm": list(r.pixel_spacing_mm),
                "spacing_source": r.spacing_source.value,
                "body_part": r.body_part,
                "view": r.view_position,
                "laterality": r.laterality,
                "presentation_intent": r.presentation_intent,
                "applied": list(r.applied),
                **extra,
            })
    for path in found.own_outputs:
        records.append({"status": "refused", "frame": None, **_header_facts(str(path)), "code": "E_NOT_RADIOGRAPH",
                        "reason": "an SR or overlay that calcdx wrote: calcdx predict passes it over",
                        "path": str(path)})
    for path, error in found.skipped:
        records.append({"status": "refused", "frame": None, **error.as_dict(), "path": str(path)})
    return records


COLUMNS: tuple[tuple[str, str], ...] = (
    ("decision", "DECISION"), ("frame", "FRAME"), ("modality", "MOD"), ("size", "SIZE px"),
    ("photometric", "PHOTOMETRIC"), ("transfer_syntax", "TRANSFER SYNTAX"), ("decoder", "DECODER"),
    ("spacing", "SPACING mm (source)"), ("path", "FILE"),
)


def _cells(rec: dict[str, Any]) -> dict[str, str]:
    size = f"{rec['rows']}x{rec['columns']}" if rec.get("rows") and rec.get("columns") else "-"
    spacing = "-"
    if rec["status"] == "accepted":
        sp = rec["pixel_spacing_mm"]
        spacing = f"{sp[0]:.4g}x{sp[1]:.4g} ({rec['spacing_source']})"
    return {
        "decision": "ACCEPTED" if rec["status"] == "accepted" else "REFUSED",
        "frame": "-" if rec.get("frame") is None else str(rec["frame"]),
        "modality": rec.get("modality") or "-",
        "size": size,
        "photometric": rec.get("photometric") or "-",
        "transfer_syntax": rec.get("transfer_syntax") or "-",
        "decoder": rec.get("decoder") or "-",
        "spacing": spacing,
        "path": rec["path"],
    }


def format_table(records: list[dict[str, Any]]) -> str:
    """A fixed-width table, one row per file/frame, each followed by its LUTs or refusal reason."""
    rows = [_cells(r) for r in records]
    widths = {key: max([len(title)] + [len(row[key]) for row in rows]) for key, title in COLUMNS}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in COLUMNS).rstrip()]
    for rec, row in zip(records, rows, strict=True):
        lines.append("  ".join(row[key].ljust(widths[key]) for key, _ in COLUMNS).rstrip())
        if rec["status"] == "accepted":
            steps = [s for s in rec["applied"] if not s.startswith(("decoded ", "spacing "))]
            lines.append(f"    steps: {'; '.join(steps)}")
        else:
            lines.append(f"    [{rec['code']}] {rec['reason']}")
    n_ok = sum(r["status"] == "accepted" for r in records)
    lines.append(f"\n{n_ok} accepted, {len(records) - n_ok} refused")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import logging

    import pydicom  # noqa: F401 - pydicom sets its logger's level on import; override it after

    if getattr(args, "verbose", 0) < 2:  # pydicom logs every failed decoder attempt with a traceback
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    records = describe_paths(args.paths, default_spacing_mm=args.default_spacing, voi=args.voi)
    if args.json:
        json.dump({"files": records}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(records))
    return 0 if records and all(r["status"] == "accepted" for r in records) else 1
