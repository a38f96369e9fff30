"""How right the findings are: ``calcdx predict`` results scored against per-lesion ground truth.

Image-level AUROC (``calcdx evaluate``) says whether a pattern is present; this module says whether
each *finding* points at a real deposit of its pattern, and how close its measurements are to the
truth: the size in mm that the seed text asks radiologists to report for follow-up, the centroid,
the margin, the location class.  Ground truth is the manifest's ``annotations`` JSON (the simulator
writes it for every image; researchers can write the same format, ``calcdx.datasets.manifest``).

Matching, image by image and pattern by pattern, strongest finding first:

* a finding **hits** a ground-truth lesion when the finding's centroid lies inside the lesion's box,
  or the lesion's centroid inside the finding's box, either box widened by ``tolerance_mm``; it takes
  the nearest such lesion of its own pattern that no stronger finding took;
* a finding that reaches only lesions of its pattern already taken is a **duplicate** (a second
  finding on one deposit: not a false positive, counted apart);
* any other finding is a **false positive**, labelled by what it sits on: another pattern's lesion
  (``other_pattern``), a hard negative (``look_alike``, e.g. vessel calcification or a marker), or
  nothing that was drawn (``background``).

A finding counts at the operating point it reached ("definite" also counts as "possible").  Images the
batch refused or declined count every lesion as missed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calcdx.datasets.manifest import ManifestRow, load_annotations
from calcdx.errors import ManifestError
from calcdx.inference.findings import CPPD_TENDON
from calcdx.taxonomy import PATTERNS
from calcdx.training.metrics import ratio_spread

DEFAULT_TOLERANCE_MM = 5.0
OPERATING_POINTS: tuple[str, ...] = ("possible", "definite")
EXPECTED_MARGIN: dict[str, str] = {"formative_resting": "well_defined", "resorptive": "ill_defined"}
"""The margin a HADD deposit of each simulated variant should be reported with (seed: formative and
resting phases dense, homogeneous and well defined; resorptive fluffy and ill defined)."""


SITE_HEAD_KINDS = frozenset({"hadd", "cppd"})
"""Patterns whose findings a site head names (HADD: the tendon; CPPD: cartilage site or tendon)."""

@dataclass(frozen=True)
class TruthLesion:
    """One ground-truth lesion of an annotations JSON, in the image's pixel coordinates."""

    kind: str
    is_pattern: bool
    bbox_px: tuple[int, int, int, int]  # r0, c0, r1, c1 (max exclusive)
    centroid_px: tuple[float, float]
    long_mm: float | None
    short_mm: float | None
    location_class: str | None
    variant: str | None
    visibility: str | None
    count: int | None
    site: str | None = None

    @property
    def named_site(self) -> str | None:
        """The site a site head should name: HADD's tendon; for CPPD its cartilage site, or ``tendon``."""
        if self.kind == "cppd" and self.location_class == "tendon":
            return CPPD_TENDON
        return self.site if self.kind in SITE_HEAD_KINDS else None

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: Path) -> TruthLesion:
        try:
            r0, c0, r1, c1 = (int(v) for v in record["bbox_px"])
            kind = str(record["kind"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"a lesion needs 'kind' and 'bbox_px' [r0, c0, r1, c1] ({exc!r})", path=source) from exc
        centroid = record.get("centroid_px") or ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)
        size = record.get("size_mm") or (None, None)
        return cls(kind=kind, is_pattern=bool(record.get("is_pattern", kind in PATTERNS)), bbox_px=(r0, c0, r1, c1),
                   centroid_px=(float(centroid[0]), float(centroid[1])),
                   long_mm=None if size[0] is None else float(size[0]),
                   short_mm=None if size[1] is None else float(size[1]),
                   location_class=record.get("location_class"), variant=record.get("variant"),
                   visibility=record.get("visibility"),
                   count=int(record["count"]) if record.get("count") is not None else None,
                   site=record.get("site"))


@dataclass(frozen=True)
class ScoredFinding:
    """One finding of the results and what it hit."""

    image: str
    pattern: str
    probability: float
    operating_point: str
    outcome: str  # "hit", "duplicate" or "false_positive"
    sits_on: str  # the lesion kind it hit or sits on; "background" for none
    lesion_index: int | None  # index of the lesion in the image's annotations
    centroid_error_mm: float | None
    long_mm: float
    short_mm: float
    margin: str | None
    location_class: str | None
    count: int | None


@dataclass(frozen=True)
class ScoredLesion:
    """One ground-truth pattern lesion and the finding that found it (if any)."""

    image: str
    lesion_index: int
    pattern: str
    visibility: str | None
    variant: str | None
    detected_at: str | None  # "definite", "possible" or None (missed)
    probability: float | None
    truth_long_mm: float | None
    truth_short_mm: float | None
    found_long_mm: float | None
    found_short_mm: float | None
    centroid_error_mm: float | None
    location_agrees: bool | None
    margin_agrees: bool | None
    site_named: bool | None  # the finding named a tendon (site head) rather than a generic site
    site_agrees: bool | None  # the tendon it named is the lesion's
    truth_count: int | None
    found_count: int | None
    image_status: str  # "analyzed", "not_analyzed" or "missing" (no result for the image)
    body_part: str | None = None  # the manifest row's


def _widened(box: Sequence[float], pad_rows: float, pad_cols: float) -> tuple[float, float, float, float]:
    return box[0] - pad_rows, box[1] - pad_cols, box[2] + pad_rows, box[3] + pad_cols


def _inside(point: Sequence[float], box: Sequence[float]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def reaches(finding: dict[str, Any], lesion: TruthLesion, spacing_mm: Sequence[float], tolerance_mm: float) -> bool:
    """Whether ``finding`` (a result JSON finding) points at ``lesion`` (see the module docstring)."""
    pad_r, pad_c = tolerance_mm / spacing_mm[0], tolerance_mm / spacing_mm[1]
    return (_inside(finding["centroid_px"], _widened(lesion.bbox_px, pad_r, pad_c))
            or _inside(lesion.centroid_px, _widened(finding["bbox_px"], pad_r, pad_c)))


def _distance_mm(a: Sequence[float], b: Sequence[float], spacing_mm: Sequence[float]) -> float:
    return float(np.hypot((a[0] - b[0]) * spacing_mm[0], (a[1] - b[1]) * spacing_mm[1]))


def score_image(image: str, findings: Sequence[dict[str, Any]], lesions: Sequence[TruthLesion],
                spacing_mm: Sequence[float], *, tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                status: str = "analyzed",
                body_part: str | None = None) -> tuple[list[ScoredFinding], list[ScoredLesion]]:
    """Match one image's findings to its ground-truth lesions."""
    taken: dict[int, dict[str, Any]] = {}
    scored: list[ScoredFinding] = []
    for finding in sorted(findings, key=lambda f: -float(f["probability"])):
        pattern = str(finding["pattern"])
        reached = [i for i, les in enumerate(lesions) if reaches(finding, les, spacing_mm, tolerance_mm)]
        own = [i for i in reached if lesions[i].kind == pattern]
        free = [i for i in own if i not in taken]

        distance = {i: _distance_mm(finding["centroid_px"], lesions[i].centroid_px, spacing_mm) for i in reached}

        def nearest(candidates: list[int], distance: dict[int, float] = distance) -> int:
            return min(candidates, key=distance.__getitem__)

        if free:
            index: int | None = nearest(free)
            taken[index] = finding
            outcome, sits_on = "hit", pattern
        elif own:
            index, outcome, sits_on = nearest(own), "duplicate", pattern
        else:
            others = [i for i in reached if lesions[i].kind != pattern]
            index = nearest(others) if others else None
            outcome = "false_positive"
            sits_on = lesions[index].kind if index is not None else "background"
        scored.append(ScoredFinding(
            image=image, pattern=pattern, probability=float(finding["probability"]),
            operating_point=str(finding["operating_point"]), outcome=outcome, sits_on=sits_on, lesion_index=index,
            centroid_error_mm=None if index is None else round(distance[index], 3),
            long_mm=float(finding["long_axis_mm"]), short_mm=float(finding["short_axis_mm"]),
            margin=finding.get("margin"), location_class=finding.get("location_class"), count=finding.get("count")))
    truth: list[ScoredLesion] = []
    for i, les in enumerate(lesions):
        if not les.is_pattern:
            continue
        hit = taken.get(i)
        expected_margin = EXPECTED_MARGIN.get(les.variant or "") if les.kind == "hadd" else None
        truth.append(ScoredLesion(
            image=image, lesion_index=i, pattern=les.kind, visibility=les.visibility, variant=les.variant,
            detected_at=None if hit is None else str(hit["operating_point"]),
            probability=None if hit is None else float(hit["probability"]),
            truth_long_mm=les.long_mm, truth_short_mm=les.short_mm,
            found_long_mm=None if hit is None else float(hit["long_axis_mm"]),
            found_short_mm=None if hit is None else float(hit["short_axis_mm"]),
            centroid_error_mm=None if hit is None else round(
                _distance_mm(hit["centroid_px"], les.centroid_px, spacing_mm), 3),
            location_agrees=None if hit is None or les.location_class is None
            else hit.get("location_class") == les.location_class,
            margin_agrees=None if hit is None or expected_margin is None else hit.get("margin") == expected_margin,
            site_named=None if hit is None or les.kind not in SITE_HEAD_KINDS
            else hit.get("site_probability") is not None,
            site_agrees=None if hit is None or les.named_site is None or hit.get("site_probability") is None
            else hit.get("site") == les.named_site,
            truth_count=les.count, found_count=None if hit is None else hit.get("count"), image_status=status,
            body_part=body_part))
    return scored, truth


def read_results(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every analysed image record of a ``calcdx predict`` output folder, by resolved source path."""
    images: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or "images" not in data:
            continue
        for record in data["images"]:
            images[str(Path(record["source"]).resolve())] = record
    return images


def score_results(results_dir: str | Path, rows: Iterable[ManifestRow], *,
                  tolerance_mm: float = DEFAULT_TOLERANCE_MM
                  ) -> tuple[list[ScoredFinding], list[ScoredLesion], dict[str, str]]:
    """Score a results folder against the manifest rows that have annotations.

    Returns the scored findings, the scored ground-truth lesions and each scored image's status in the
    results ("analyzed", "not_analyzed", or "missing": no result for it).

    Raises:
        ManifestError: no row has annotations, or an annotations file is unreadable.
    """
    results = read_results(results_dir)
    by_uid = {str(r.get("sop_instance_uid")): r for r in results.values()}
    findings: list[ScoredFinding] = []
    lesions: list[ScoredLesion] = []
    statuses: dict[str, str] = {}
    for row in rows:
        if row.annotations is None:
            continue
        records = load_annotations(row.annotations)
        truth = [TruthLesion.from_dict(r, row.annotations) for r in records]
        record = results.get(str(row.path.resolve()))
        if record is None:  # the source path may differ (a copy): the annotations may name the instance
            uid = json.loads(row.annotations.read_text(encoding="utf-8")).get("sop_instance_uid")
            record = by_uid.get(str(uid)) if uid else None
        name = row.path.name
        statuses[name] = "missing" if record is None else str(record.get("status"))
        if statuses[name] != "analyzed":
            _, missed = score_image(name, [], truth, (1.0, 1.0), tolerance_mm=tolerance_mm, status=statuses[name],
                                    body_part=row.body_part)
            lesions.extend(missed)
            continue
        spacing = tuple(float(v) for v in record["pixel_spacing_mm"])
        got_findings, got_lesions = score_image(name, record["findings"], truth, spacing, tolerance_mm=tolerance_mm,
                                                body_part=row.body_part)
        findings.extend(got_findings)
        lesions.extend(got_lesions)
    if not statuses:
        raise ManifestError("no row of the manifest has an 'annotations' file: nothing to score findings against")
    return findings, lesions, statuses


def _at(level: str, operating_point: str | None) -> bool:
    return operating_point == "definite" or (level == "possible" and operating_point == "possible")


def _quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"n": int(arr.size), "median": round(float(np.median(arr)), 3),
            "p90": round(float(np.percentile(arr, 90)), 3)}


TRUE_LENGTH_BINS_MM: tuple[tuple[str, float, float], ...] = (
    ("under 5 mm", 0.0, 5.0), ("5-8 mm", 5.0, 8.0), ("8-12 mm", 8.0, 12.0), ("12 mm and more", 12.0, np.inf),
    ("5 mm and more", 5.0, np.inf), ("20 mm and more", 20.0, np.inf))
"""True long-axis ranges that ``long_axis_ratio_by_true_length`` reports separately (small deposits are
measured worst, "5 mm and more" is the range the follow-up rests on, and "20 mm and more" the large deposits
of ``calcdx simulate --hadd-length-mm``)."""


def _ratio_spread(ratios: Sequence[float]) -> dict[str, float | int | None]:
    """n and ``metrics.ratio_spread`` of found/true ratios (None for none)."""
    if not ratios:
        return {"n": 0, "median": None, "p10": None, "p90": None, "log_sd": None}
    return {"n": len(ratios), **ratio_spread(ratios)}


def _fraction(flags: Sequence[bool]) -> float | None:
    return round(float(np.mean(flags)), 4) if flags else None


def _pattern_summary(pattern: str, findings: Sequence[ScoredFinding], lesions: Sequence[ScoredLesion],
                     n_images: int) -> dict[str, Any]:
    mine = [les for les in lesions if les.pattern == pattern]
    calls = [f for f in findings if f.pattern == pattern]
    out: dict[str, Any] = {"lesions": len(mine)}
    for level in OPERATING_POINTS:
        found = [les for les in mine if _at(level, les.detected_at)]
        wrong = [f for f in calls if f.outcome == "false_positive" and _at(level, f.operating_point)]
        sits_on: dict[str, int] = {}
        for f in wrong:
            sits_on[f.sits_on] = sits_on.get(f.sits_on, 0) + 1
        out[level] = {
            "sensitivity": round(len(found) / len(mine), 4) if mine else None,
            "false_positives_per_image": round(len(wrong) / n_images, 4),
            "false_positives_on": dict(sorted(sits_on.items(), key=lambda kv: -kv[1])),
            "duplicates": sum(f.outcome == "duplicate" and _at(level, f.operating_point) for f in calls),
        }
        if level == "possible":
            for attribute in ("visibility", "body_part"):
                groups: dict[str, list[bool]] = {}
                for les in mine:
                    groups.setdefault(getattr(les, attribute) or "unknown", []).append(_at(level, les.detected_at))
                out[level][f"sensitivity_by_{attribute}"] = {k: _fraction(v) for k, v in sorted(groups.items())}
    hits = [les for les in mine if les.detected_at is not None]
    long_pairs = [(les.found_long_mm, les.truth_long_mm) for les in hits
                  if les.found_long_mm is not None and les.truth_long_mm]
    short_pairs = [(les.found_short_mm, les.truth_short_mm) for les in hits
                   if les.found_short_mm is not None and les.truth_short_mm]
    out["measurement"] = {
        "long_axis_abs_error_mm": _quantiles([abs(f - t) for f, t in long_pairs]),
        "long_axis_ratio": _quantiles([f / t for f, t in long_pairs]),
        "long_axis_ratio_by_true_length": {name: _ratio_spread([f / t for f, t in long_pairs if lo <= t < hi])
                                           for name, lo, hi in TRUE_LENGTH_BINS_MM},
        "short_axis_abs_error_mm": _quantiles([abs(f - t) for f, t in short_pairs]),
        "short_axis_ratio": _quantiles([f / t for f, t in short_pairs]),
        "centroid_error_mm": _quantiles([les.centroid_error_mm for les in hits if les.centroid_error_mm is not None]),
        "location_class_agreement": _fraction([les.location_agrees for les in hits if les.location_agrees is not None]),
        "margin_agreement": _fraction([les.margin_agrees for les in hits if les.margin_agrees is not None]),
        "site_named": _fraction([les.site_named for les in hits if les.site_named is not None]),
        "site_agreement": _fraction([les.site_agrees for les in hits if les.site_agrees is not None]),
        "count_exact": _fraction([les.found_count == les.truth_count for les in hits
                                  if les.truth_count is not None and les.found_count is not None]),
    }
    return out


def summarise(findings: Sequence[ScoredFinding], lesions: Sequence[ScoredLesion], statuses: dict[str, str], *,
              tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> dict[str, Any]:
    """The report: per pattern, lesion sensitivity and false positives per image at each operating point,
    what the false positives sit on, and the measurement errors of the hits.  ``statuses``: every scored
    image's status (``score_results``); false positives are counted per scored image."""
    n_images = len(statuses)
    present = {les.pattern for les in lesions} | {f.pattern for f in findings}
    patterns = [p for p in PATTERNS if p in present]
    overall = {}
    for level in OPERATING_POINTS:
        found = [les for les in lesions if _at(level, les.detected_at)]
        wrong = [f for f in findings if f.outcome == "false_positive" and _at(level, f.operating_point)]
        overall[level] = {"sensitivity": round(len(found) / len(lesions), 4) if lesions else None,
                          "false_positives_per_image": round(len(wrong) / n_images, 4) if n_images else None}
    return {
        "n_images": n_images, "n_lesions": len(lesions), "n_findings": len(findings), "tolerance_mm": tolerance_mm,
        "images_not_analyzed": sum(s == "not_analyzed" for s in statuses.values()),
        "images_missing": sum(s == "missing" for s in statuses.values()),
        "overall": overall,
        "per_pattern": {p: _pattern_summary(p, findings, lesions, n_images) for p in patterns},
    }


def write_tables(out_dir: str | Path, findings: Sequence[ScoredFinding], lesions: Sequence[ScoredLesion]) -> None:
    """``findings.csv`` (one row per finding) and ``lesions.csv`` (one row per ground-truth lesion)."""
    import csv

    out = Path(out_dir)
    for name, records, kind in (("findings.csv", findings, ScoredFinding), ("lesions.csv", lesions, ScoredLesion)):
        with open(out / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(kind.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(asdict(r) for r in records)
