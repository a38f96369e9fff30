"""Scoring findings against per-lesion ground truth (``calcdx score``): the matching rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calcdx.training.finding_accuracy import TruthLesion, score_image, summarise

SPACING = (0.2, 0.2)


def lesion(kind: str, box: tuple[int, int, int, int], *, size: tuple[float, float] = (4.0, 2.0),
           variant: str | None = None, is_pattern: bool | None = None) -> TruthLesion:
    record: dict[str, Any] = {"kind": kind, "bbox_px": list(box), "size_mm": list(size), "variant": variant,
                              "location_class": "tendon", "visibility": "obvious"}
    if is_pattern is not None:
        record["is_pattern"] = is_pattern
    return TruthLesion.from_dict(record, source=Path("truth.json"))


def finding(pattern: str, centre: tuple[float, float], probability: float, *, op: str = "definite",
            long_mm: float = 4.0, short_mm: float = 2.0, margin: str = "well_defined") -> dict[str, Any]:
    r, c = centre
    return {"pattern": pattern, "probability": probability, "operating_point": op, "centroid_px": [r, c],
            "bbox_px": [int(r) - 5, int(c) - 5, int(r) + 5, int(c) + 5], "long_axis_mm": long_mm,
            "short_axis_mm": short_mm, "margin": margin, "location_class": "tendon", "count": 1}


def test_hits_duplicates_and_false_positives_are_told_apart() -> None:
    truth = [lesion("hadd", (100, 100, 120, 140), variant="resorptive"),
             lesion("arterial_medial", (300, 300, 320, 400)),
             lesion("cppd", (500, 100, 510, 300))]
    found = [finding("hadd", (110, 120), 0.9, long_mm=5.0, margin="ill_defined"),  # on the HADD deposit
             finding("hadd", (112, 125), 0.6, op="possible"),  # a second finding on it
             finding("hadd", (310, 350), 0.7, op="possible"),  # on a vessel
             finding("hadd", (505, 200), 0.5, op="possible"),  # on the CPPD line
             finding("hadd", (800, 800), 0.4, op="possible")]  # on nothing drawn
    scored, lesions = score_image("a.dcm", found, truth, SPACING)
    outcomes = {(f.outcome, f.sits_on) for f in scored}
    assert outcomes == {("hit", "hadd"), ("duplicate", "hadd"), ("false_positive", "arterial_medial"),
                        ("false_positive", "cppd"), ("false_positive", "background")}
    hadd = next(x for x in lesions if x.pattern == "hadd")
    assert hadd.detected_at == "definite" and hadd.probability == 0.9 and hadd.margin_agrees is True
    assert hadd.found_long_mm == 5.0 and hadd.truth_long_mm == 4.0
    assert hadd.centroid_error_mm == pytest.approx(((110 - 109.5) ** 2 + (120 - 119.5) ** 2) ** 0.5 * 0.2, abs=1e-3)
    cppd = next(x for x in lesions if x.pattern == "cppd")
    assert cppd.detected_at is None  # a HADD finding on it does not find it
    assert [x.pattern for x in lesions] == ["hadd", "cppd"]  # hard negatives are not lesions to find

    report = summarise(scored, lesions, {"a.dcm": "analyzed", "b.dcm": "analyzed"})
    hadd_report = report["per_pattern"]["hadd"]
    assert hadd_report["possible"]["sensitivity"] == 1.0 and hadd_report["definite"]["sensitivity"] == 1.0
    assert hadd_report["possible"]["false_positives_per_image"] == 1.5  # three false findings on two images
    assert hadd_report["definite"]["false_positives_per_image"] == 0.0
    assert hadd_report["possible"]["false_positives_on"] == {"arterial_medial": 1, "cppd": 1, "background": 1}
    assert hadd_report["possible"]["duplicates"] == 1 and hadd_report["definite"]["duplicates"] == 0
    assert hadd_report["measurement"]["long_axis_ratio"]["median"] == 1.25
    by_length = hadd_report["measurement"]["long_axis_ratio_by_true_length"]
    assert by_length["under 5 mm"] == {"n": 1, "p10": 1.25, "median": 1.25, "p90": 1.25, "log_sd": 0.0}
    assert by_length["5 mm and more"]["n"] == 0 and by_length["5 mm and more"]["median"] is None
    assert report["per_pattern"]["cppd"]["possible"]["sensitivity"] == 0.0


def test_tolerance_and_one_finding_per_lesion() -> None:
    truth = [lesion("phlebolith", (100, 100, 110, 110)), lesion("phlebolith", (100, 130, 110, 140))]
    near = finding("phlebolith", (105, 120), 0.8)  # 10 px = 2 mm from both boxes, between them
    near["bbox_px"] = [104, 119, 106, 121]
    assert score_image("a.dcm", [near], truth, SPACING, tolerance_mm=1.0)[0][0].outcome == "false_positive"
    scored, lesions = score_image("a.dcm", [near], truth, SPACING, tolerance_mm=2.5)
    assert scored[0].outcome == "hit" and sum(x.detected_at is not None for x in lesions) == 1


def test_a_missing_image_misses_every_lesion() -> None:
    _, lesions = score_image("a.dcm", [], [lesion("cppd", (0, 0, 10, 10))], SPACING, status="missing")
    report = summarise([], lesions, {"a.dcm": "missing"})
    assert report["images_missing"] == 1 and report["images_not_analyzed"] == 0
    assert report["overall"]["possible"]["sensitivity"] == 0.0
