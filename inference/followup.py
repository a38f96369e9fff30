"""Follow-up comparison: each HADD deposit against the same patient's prior study, tendon by tendon.

The seed asks the radiologist to report a HADD deposit with its tendon, size and margin "for comparison
with follow-up" [D003_HADD_REPORT].  This module does that comparison over study results
(``calcdx predict`` JSON files, schema 1.1: ``patient_id``, ``study_date``, each image's ``body_part``
and ``laterality``):

* studies are grouped by patient and ordered by date; each is compared with the patient's latest
  earlier study that imaged the same body part on the same side;
* a deposit is keyed by body part, side and tendon (the site head's tendon, else the generic site);
  in each study it is represented by its longest finding over the study's images;
* its change is called from the long axis: ``larger`` or ``smaller`` when it moved by at least
  ``CHANGE_MM`` and by ``CHANGE_FRACTION`` of the prior's, else ``stable``; ``new`` or ``not_seen``
  when one study has no finding there; a margin that turned ill defined is named, because an
  ill-defined deposit is more often symptomatic [D003_HADD_SYMPTOMATIC].

The thresholds were set beforehand; on simulated pairs the share of right calls hardly moves with them,
while the size measurement decides it (docs/inference.md, ``benchmarks/followup_accuracy.py``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calcdx.taxonomy import Pattern

CHANGE_MM = 1.5
"""Smallest change of the long axis called larger or smaller, in mm."""
CHANGE_FRACTION = 0.25
"""... and as a share of the prior's long axis."""
UNKNOWN_SIDE = "side unknown"
FOLLOWUP_COLUMNS: tuple[str, ...] = (
    "patient_id", "prior_study_uid", "prior_date", "current_study_uid", "current_date", "interval_days",
    "body_part", "laterality", "tendon", "status", "prior_long_axis_mm", "prior_short_axis_mm", "prior_margin",
    "current_long_axis_mm", "current_short_axis_mm", "current_margin", "change_mm", "change_percent",
    "margin_change", "text",
)


@dataclass(frozen=True)
class Deposit:
    """A HADD deposit as one study shows it: its longest finding there."""

    study_uid: str
    sop_instance_uid: str
    long_axis_mm: float
    short_axis_mm: float
    margin: str | None
    probability: float
    operating_point: str
    site_named: bool = True
    """False when the tendon head was not sure and the finding kept the body part's generic site."""


@dataclass(frozen=True)
class StudyDeposits:
    """One study's HADD deposits by (body part, side, tendon), and the (body part, side) it imaged."""

    study_uid: str
    patient_id: str
    date: dt.date
    imaged: frozenset[tuple[str, str]]
    deposits: dict[tuple[str, str, str], Deposit] = field(default_factory=dict)


@dataclass
class DepositChange:
    """One deposit compared across two studies of one patient."""

    patient_id: str
    prior_study_uid: str
    prior_date: str
    current_study_uid: str
    current_date: str
    interval_days: int
    body_part: str
    laterality: str
    tendon: str
    status: str  # larger, smaller, stable, new, not_seen
    prior: Deposit | None
    current: Deposit | None
    change_mm: float | None
    change_percent: float | None
    margin_change: str | None  # "became ill defined", "became well defined" or None
    text: str
    cite: list[str]

    def row(self) -> dict[str, Any]:
        """The ``followup.csv`` row."""
        return {
            "patient_id": self.patient_id, "prior_study_uid": self.prior_study_uid, "prior_date": self.prior_date,
            "current_study_uid": self.current_study_uid, "current_date": self.current_date,
            "interval_days": self.interval_days, "body_part": self.body_part, "laterality": self.laterality,
            "tendon": self.tendon, "status": self.status,
            "prior_long_axis_mm": self.prior.long_axis_mm if self.prior else "",
            "prior_short_axis_mm": self.prior.short_axis_mm if self.prior else "",
            "prior_margin": self.prior.margin if self.prior else "",
            "current_long_axis_mm": self.current.long_axis_mm if self.current else "",
            "current_short_axis_mm": self.current.short_axis_mm if self.current else "",
            "current_margin": self.current.margin if self.current else "",
            "change_mm": "" if self.change_mm is None else self.change_mm,
            "change_percent": "" if self.change_percent is None else self.change_percent,
            "margin_change": self.margin_change or "", "text": self.text,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def study_deposits(result: dict[str, Any]) -> StudyDeposits | None:
    """The HADD deposits of one study result; None without a patient ID or a study date."""
    patient, date = result.get("patient_id"), result.get("study_date")
    if not patient or not date:
        return None
    try:
        when = dt.date.fromisoformat(str(date))
    except ValueError:
        return None
    study = StudyDeposits(str(result.get("study_instance_uid", "")), str(patient), when, frozenset(
        (_part(im), _side(im)) for im in result.get("images", []) if im.get("status") == "analyzed"))
    for image in result.get("images", []):
        if image.get("status") != "analyzed":
            continue
        for finding in image.get("findings", []):
            if finding.get("pattern") != Pattern.HADD.value:
                continue
            key = (_part(image), _side(image), str(finding.get("site") or "site not named"))
            deposit = Deposit(study.study_uid, str(image.get("sop_instance_uid", "")),
                              float(finding["long_axis_mm"]), float(finding["short_axis_mm"]), finding.get("margin"),
                              float(finding["probability"]), str(finding.get("operating_point", "")),
                              site_named=finding.get("site_probability") is not None)
            if key not in study.deposits or deposit.long_axis_mm > study.deposits[key].long_axis_mm:
                study.deposits[key] = deposit
    return study


def _part(image: dict[str, Any]) -> str:
    return str(image.get("body_part") or "body part unknown")


def _side(image: dict[str, Any]) -> str:
    return str(image.get("laterality") or UNKNOWN_SIDE)


def same_region(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Same body part, and the same side or a side one of the files does not record (a CR file of the
    pelvis carries no Laterality, the DX file of the same patient's next visit may)."""
    return a[0] == b[0] and (a[1] == b[1] or UNKNOWN_SIDE in (a[1], b[1]))


def prior_region(imaged: frozenset[tuple[str, str]], region: tuple[str, str]) -> tuple[str, str] | None:
    """The region of a prior study that ``region`` is compared with: the same, else the one region that
    ``same_region`` matches (None when there is none, or several: both sides, and this side unknown)."""
    if region in imaged:
        return region
    matches = [r for r in imaged if same_region(r, region)]
    return matches[0] if len(matches) == 1 else None


def compare(prior: StudyDeposits, current: StudyDeposits, region: tuple[str, str]) -> list[DepositChange]:
    """Every deposit in ``region`` (a body part and side of ``current``) against ``prior``'s in the same
    region, tendon by tendon (nothing when the prior has no such region)."""
    then = prior_region(prior.imaged, region)
    if then is None:
        return []
    before = {key[2]: deposit for key, deposit in prior.deposits.items() if key[:2] == then}
    after = {key[2]: deposit for key, deposit in current.deposits.items() if key[:2] == region}
    _pair_unnamed(before, after)
    return [_change(prior, current, region, tendon, before.get(tendon), after.get(tendon))
            for tendon in sorted(set(before) | set(after))]


def _pair_unnamed(before: dict[str, Deposit], after: dict[str, Deposit]) -> None:
    """Where each study has one deposit the other lacks and one of the two kept the generic site (the
    tendon head was not sure), they are one deposit: filed, in both, under the tendon that was named."""
    only_before, only_after = set(before) - set(after), set(after) - set(before)
    if len(only_before) != 1 or len(only_after) != 1:
        return
    (b,), (a,) = only_before, only_after
    if not before[b].site_named:
        before[a] = before.pop(b)
    elif not after[a].site_named:
        after[b] = after.pop(a)


def _change(prior: StudyDeposits, current: StudyDeposits, region: tuple[str, str], tendon: str,
            before: Deposit | None, after: Deposit | None) -> DepositChange:
    change_mm = change_percent = None
    margin_change = None
    cite = ["D003_HADD_REPORT"]
    if before and after:
        change_mm = round(after.long_axis_mm - before.long_axis_mm, 2)
        change_percent = round(100.0 * change_mm / max(before.long_axis_mm, 1e-6), 1)
        status = size_call(before.long_axis_mm, after.long_axis_mm)
        if before.margin != after.margin and before.margin and after.margin:
            margin_change = f"became {after.margin.replace('_', ' ')}"
            if after.margin == "ill_defined":
                cite.append("D003_HADD_SYMPTOMATIC")
    else:
        status = "new" if after else "not_seen"
    body_part, side = region
    days = (current.date - prior.date).days
    text = _text(status, tendon, body_part, side, before, after, change_mm, change_percent, margin_change, days)
    return DepositChange(current.patient_id, prior.study_uid, prior.date.isoformat(), current.study_uid,
                         current.date.isoformat(), days, body_part, side, tendon, status, before, after, change_mm,
                         change_percent, margin_change, text, cite)


def size_call(prior_long_mm: float, current_long_mm: float) -> str:
    """``larger`` / ``smaller`` when the long axis moved by at least ``CHANGE_MM`` and ``CHANGE_FRACTION``
    of the prior's, else ``stable``."""
    change = current_long_mm - prior_long_mm
    if abs(change) >= max(CHANGE_MM, CHANGE_FRACTION * prior_long_mm):
        return "larger" if change > 0 else "smaller"
    return "stable"


def _text(status: str, tendon: str, body_part: str, side: str, before: Deposit | None, after: Deposit | None,
          change_mm: float | None, change_percent: float | None, margin_change: str | None, days: int) -> str:
    def seen(d: Deposit) -> str:
        margin = f", {d.margin.replace('_', ' ')}" if d.margin else ""
        return f"{d.long_axis_mm:.1f} x {d.short_axis_mm:.1f} mm{margin}"

    where = f"HADD, {tendon} ({body_part}, {side})"
    if status == "new":
        return f"{where}: new, {seen(after)} (not seen {days} days before)"  # type: ignore[arg-type]
    if status == "not_seen":
        return (f"{where}: not seen now; {seen(before)} {days} days before "  # type: ignore[arg-type]
                "(resolved, or hidden in this projection)")
    text = f"{where}: {status}, {seen(before)} -> {seen(after)} in {days} days"  # type: ignore[arg-type]
    if status != "stable":
        text += f" ({change_mm:+.1f} mm, {change_percent:+.0f} %)"
    if margin_change == "became ill defined":
        text += "; became ill defined: the resorptive phase, more often symptomatic"
    elif margin_change:
        text += f"; {margin_change}"
    return text


def compare_patients(results: Iterable[dict[str, Any]]) -> list[DepositChange]:
    """Every study of every patient against that patient's latest earlier study of the same part and side."""
    return compare_studies(study_deposits(result) for result in results)


def compare_studies(studies: Iterable[StudyDeposits | None]) -> list[DepositChange]:
    """``compare_patients`` on the studies' deposits (``study_deposits``; None, for a study without a patient
    or a date, is skipped)."""
    by_patient: dict[str, list[StudyDeposits]] = {}
    for study in studies:
        if study is not None:
            by_patient.setdefault(study.patient_id, []).append(study)
    changes: list[DepositChange] = []
    for patient in sorted(by_patient):
        studies = sorted({s.study_uid: s for s in by_patient[patient]}.values(), key=lambda s: (s.date, s.study_uid))
        for current in studies:
            changes.extend(against_priors(current, studies))
    return changes


def against_priors(current: StudyDeposits, studies: Iterable[StudyDeposits]) -> list[DepositChange]:
    """``current`` against the latest of ``studies`` of its patient, dated before it, that imaged each of its
    body parts and sides."""
    earlier = sorted((s for s in studies if s.patient_id == current.patient_id and s.date < current.date),
                     key=lambda s: (s.date, s.study_uid))
    changes: list[DepositChange] = []
    for region in sorted(current.imaged):
        prior = next((s for s in reversed(earlier) if prior_region(s.imaged, region)), None)
        if prior is not None:
            changes.extend(compare(prior, current, region))
    return changes


INDEX_GLOB = "followup-index-rank*.jsonl"
"""In a ``calcdx predict`` output folder, one line per finished study with its HADD deposits (``index_line``),
one file per torchrun rank: what a new study is compared with as it is written (``finalize_study``)."""


def index_line(study: StudyDeposits) -> str:
    """``study`` as one JSON line of the index."""
    return json.dumps({"patient_id": study.patient_id, "study_uid": study.study_uid, "date": study.date.isoformat(),
                       "imaged": sorted(study.imaged),
                       "deposits": [[*key, asdict(deposit)] for key, deposit in sorted(study.deposits.items())]})


def read_index(out_dir: str | Path, patient_id: str | None = None) -> list[StudyDeposits]:
    """The studies of every index file in ``out_dir`` (the last line of a study wins; bad lines are skipped);
    with ``patient_id``, that patient's only.

    A batch asks once per study, so nothing here grows with the folder: each file is parsed once per process
    (later calls read only the lines appended since), a patient's studies are looked up, and the folder is
    listed at most every ``INDEX_LIST_SECONDS`` (``_index_files``)."""
    studies: dict[str, StudyDeposits] = {}
    with _INDEX_LOCK:
        for path in _index_files(Path(out_dir)):
            cached = _INDEX_CACHE.get(path) or _IndexFile()
            try:
                with open(path, "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    if fh.tell() < cached.offset:  # replaced or cut short: read it again
                        cached = _IndexFile()
                    fh.seek(cached.offset)
                    tail = fh.read()
            except FileNotFoundError:  # gone since the folder was listed
                _INDEX_CACHE.pop(path, None)
                continue
            complete = tail[:tail.rfind(b"\n") + 1]  # a line still being written waits for the next call
            for line in complete.decode("utf-8", "replace").splitlines():
                study = _parse_index_line(line)
                if study is not None:
                    cached.add(study)
            cached.offset += len(complete)
            _INDEX_CACHE[path] = cached
            studies.update(cached.studies if patient_id is None else cached.by_patient.get(patient_id, {}))
    return list(studies.values())


INDEX_LIST_SECONDS = 10.0
"""How long a process trusts its list of a folder's index files (this rank's own file is read every time).
Every study of one patient is written by one rank (``calcdx.inference.batch.shard_studies``), so a prior
written while a batch runs is in the rank's own file; other ranks' files and earlier runs' are found when the
folder is listed.  Listing a folder of 100,000 files took 67 ms, and it was listed once per study."""


def own_index_path(out_dir: str | Path) -> Path:
    """This rank's index file in ``out_dir`` (the one ``append_to_index`` writes)."""
    return Path(out_dir) / f"followup-index-rank{int(os.environ.get('RANK', '0') or 0)}.jsonl"


def _index_files(out_dir: Path) -> list[Path]:
    """The index files of ``out_dir``: as listed at most ``INDEX_LIST_SECONDS`` ago, and this rank's own."""
    now = time.monotonic()
    listed = _INDEX_FILES.get(out_dir)
    if listed is None or now - listed[0] > INDEX_LIST_SECONDS:
        listed = (now, sorted(out_dir.glob(INDEX_GLOB)))
        _INDEX_FILES[out_dir] = listed
    own = own_index_path(out_dir)
    return sorted({*listed[1], own}) if own.exists() else listed[1]


@dataclass
class _IndexFile:
    """What one index file held when last read: its studies by Study Instance UID and by patient."""

    offset: int = 0
    studies: dict[str, StudyDeposits] = field(default_factory=dict)
    by_patient: dict[str, dict[str, StudyDeposits]] = field(default_factory=dict)

    def add(self, study: StudyDeposits) -> None:
        earlier = self.studies.get(study.study_uid)
        if earlier is not None and earlier.patient_id != study.patient_id:
            self.by_patient.get(earlier.patient_id, {}).pop(study.study_uid, None)
        self.studies[study.study_uid] = study
        self.by_patient.setdefault(study.patient_id, {})[study.study_uid] = study


_INDEX_CACHE: dict[Path, _IndexFile] = {}
_INDEX_FILES: dict[Path, tuple[float, list[Path]]] = {}
_INDEX_LOCK = threading.Lock()


def _parse_index_line(line: str) -> StudyDeposits | None:
    try:
        data = json.loads(line)
        study = StudyDeposits(str(data["study_uid"]), str(data["patient_id"]), dt.date.fromisoformat(data["date"]),
                              frozenset((str(p), str(s)) for p, s in data["imaged"]))
        for part, side, tendon, deposit in data["deposits"]:
            study.deposits[(str(part), str(side), str(tendon))] = Deposit(**deposit)
    except (ValueError, KeyError, TypeError):
        return None
    return study


def append_to_index(out_dir: str | Path, study: StudyDeposits) -> None:
    """Add ``study`` to this rank's index file (one short line, appended; after a line a killed run left
    unfinished, on a line of its own)."""
    with open(own_index_path(out_dir), "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        torn = False
        if end:
            fh.seek(end - 1)
            torn = fh.read(1) != b"\n"
        fh.write((("\n" if torn else "") + index_line(study) + "\n").encode("utf-8"))  # appends at the end


def study_results(folders: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """The study result JSON files directly in each folder (``calcdx predict`` output)."""
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "study_instance_uid" in data and "images" in data:
                yield data


def write_followup(changes: list[DepositChange], out_dir: str | Path) -> tuple[Path, Path]:
    """``followup.json`` (every comparison, with its citations) and ``followup.csv`` (one row each)."""
    from calcdx.rules.kb import load_knowledge_base

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kb = load_knowledge_base()
    keys = sorted({key for change in changes for key in change.cite})
    payload = {"thresholds": {"change_mm": CHANGE_MM, "change_fraction": CHANGE_FRACTION},
               "comparisons": [change.to_dict() for change in changes],
               "citations": {key: kb.citation(key) for key in keys}}
    json_path, csv_path = out / "followup.json", out / "followup.csv"
    json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(FOLLOWUP_COLUMNS))
        writer.writeheader()
        writer.writerows(change.row() for change in changes)
    return json_path, csv_path
