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
        "syntax, LUTs applied, pixel spacing and its source, or the reason it is refused.",
        epilog="example: calcdx info examples/ --json > info.json\n"
        "exit code: 0 if every file is an accepted radiograph, 1 if any was refused",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders, DICOMDIRs or list files")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of a table")
    parser.add_argument("--default-spacing", type=float, default=None, metavar="MM",
                        help="spacing to assume when a file has none (default 0.15, flagged 'assumed')")
    parser.add_argument("--voi", default="first", help='VOI choice: "first" (default), "none" or an index')
    parser.set_defaults(func=run)


def _voi(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def describe_paths(paths: list[str], *, default_spacing_mm: float | None = None,
                   voi: str | int = "first") -> list[dict[str, Any]]:
    """One record per file/frame: accepted with its facts, or refused with code and reason."""
    from pydicom.uid import UID

    from calcdx.datasets.discovery import discover
    from calcdx.datasets.reader import read_radiographs
    from calcdx.errors import CalcdxError

    found = discover(paths)
    records: list[dict[str, Any]] = []
    for path, error in found.skipped:
        records.append({"path": str(path), "status": "refused", **error.as_dict(), "path_": None})
    for study in found.studies:
        for instance in study.instances:
            try:
                frames = read_radiographs(instance.path, default_spacing_mm=default_spacing_mm, voi=voi)
            except CalcdxError as error:
                records.append({"path": str(instance.path), "status": "refused", **error.as_dict()})
                continue
            for r in frames:
                records.append({
                    "path": str(instance.path),
                    "status": "accepted",
                    "frame": r.frame_index,
                    "study_uid": r.study_instance_uid,
                    "sop_instance_uid": r.sop_instance_uid,
                    "modality": r.modality,
                    "sop_class": UID(r.sop_class_uid).name if r.sop_class_uid else None,
                    "transfer_syntax": UID(r.transfer_syntax_uid).name if r.transfer_syntax_uid else None,
                    "photometric": r.photometric_interpretation,
                    "bits_stored": r.bits_stored,
                    "rows": r.shape[0],
                    "columns": r.shape[1],
                    "pixel_spacing_mm": list(r.pixel_spacing_mm),
                    "spacing_source": r.spacing_source.value,
                    "body_part": r.body_part,
                    "view": r.view_position,
                    "applied": list(r.applied),
                })
    for record in records:
        record.pop("path_", None)
    return records


def run(args: argparse.Namespace) -> int:
    records = describe_paths(args.paths, default_spacing_mm=args.default_spacing, voi=_voi(args.voi))
    if args.json:
        json.dump({"files": records}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for rec in records:
            if rec["status"] == "accepted":
                sp = rec["pixel_spacing_mm"]
                print(f"ACCEPTED {rec['path']} [frame {rec['frame']}]\n"
                      f"    {rec['modality']} {rec['sop_class']}, {rec['transfer_syntax']}, "
                      f"{rec['rows']}x{rec['columns']} px, {rec['photometric']} {rec['bits_stored']} bits\n"
                      f"    spacing {sp[0]:.4g} x {sp[1]:.4g} mm ({rec['spacing_source']}); "
                      f"body part {rec['body_part'] or '-'}, view {rec['view'] or '-'}\n"
                      f"    applied: {'; '.join(rec['applied'])}")
            else:
                print(f"REFUSED  {rec['path']}\n    [{rec['code']}] {rec['reason']}")
        n_ok = sum(r["status"] == "accepted" for r in records)
        print(f"\n{n_ok} accepted, {len(records) - n_ok} refused")
    return 0 if all(r["status"] == "accepted" for r in records) else 1
