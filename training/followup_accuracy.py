"""How right the follow-up comparison is: ``calcdx followup`` against the simulator's known courses.

``calcdx simulate --follow-ups`` renders, for each case with HADD, the same patient's follow-up study
with the deposit ``stable``, ``larger``, ``smaller``, ``resolved`` or ``resorbing``
(``calcdx.datasets.simulator.follow_up``).  Each follow-up's annotations name its prior study and the
course; the deposit's tendon is the prior's HADD lesion's ``site``.  Here every such pair is looked up
in the comparisons (by patient, prior and current study, and tendon) and the call is set against the
course: ``larger``/``smaller``/``stable`` as such, ``resolved`` as ``not_seen``, ``resorbing`` as
``stable`` with the margin ``became ill defined``.  Comparisons on other tendons of the same pair are
counted as spurious.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calcdx.datasets.manifest import ManifestRow
from calcdx.inference.followup import DepositChange

EXPECTED: dict[str, str] = {"stable": "stable", "larger": "larger", "smaller": "smaller", "resolved": "not_seen",
                            "resorbing": "stable"}
"""The size call each course should get (``resorbing`` keeps its size and changes its margin)."""


@dataclass(frozen=True)
class PairTruth:
    """One simulated prior/follow-up pair."""

    patient_id: str
    prior_study_uid: str
    current_study_uid: str
    tendon: str
    course: str
    size_factor: float
    prior_long_axis_mm: float


def pair_truths(rows: list[ManifestRow]) -> list[PairTruth]:
    """The follow-up pairs of a simulated manifest (rows whose annotations carry ``follow_up``)."""
    by_study = {row.study_uid: row for row in rows}
    truths = []
    for row in rows:
        if row.annotations is None:
            continue
        annotation = json.loads(Path(row.annotations).read_text(encoding="utf-8"))
        follow = annotation.get("follow_up")
        prior = by_study.get(follow["prior_study_uid"]) if follow else None
        if follow is None or prior is None or prior.annotations is None:
            continue
        lesions = json.loads(Path(prior.annotations).read_text(encoding="utf-8"))["lesions"]
        hadd = next(les for les in lesions if les["kind"] == "hadd")
        truths.append(PairTruth(row.patient_id, str(prior.study_uid), str(row.study_uid), hadd["site"],
                                follow["course"], float(follow["size_factor"]), float(hadd["size_mm"][0])))
    return truths


def score_followup(truths: list[PairTruth], changes: list[DepositChange]) -> dict[str, Any]:
    """Per course: pairs, the calls they got, share right; size-call accuracy; margin turns caught; spurious."""
    by_pair: dict[tuple[str, str], list[DepositChange]] = {}
    for change in changes:
        by_pair.setdefault((change.prior_study_uid, change.current_study_uid), []).append(change)
    courses: dict[str, Counter[str]] = {}
    right = Counter[str]()
    ratios: dict[str, list[float]] = {}
    spurious = 0
    margin_turns = Counter[str]()
    for truth in truths:
        pair = by_pair.get((truth.prior_study_uid, truth.current_study_uid), [])
        match = next((c for c in pair if c.tendon == truth.tendon), None)
        spurious += sum(c is not match for c in pair)
        call = match.status if match else "no comparison"
        courses.setdefault(truth.course, Counter())[call] += 1
        right[truth.course] += call == EXPECTED[truth.course]
        if match and match.prior and match.current:
            ratios.setdefault(truth.course, []).append(match.current.long_axis_mm / max(match.prior.long_axis_mm, 1e-6))
        if truth.course == "resorbing" and match:
            margin_turns["caught" if match.margin_change == "became ill defined" else "missed"] += 1
        elif match and match.margin_change == "became ill defined":
            margin_turns["false"] += 1
    n = len(truths)
    return {
        "pairs": n,
        "per_course": {course: {"pairs": sum(calls.values()), "calls": dict(calls.most_common()),
                                "right": right[course] / max(sum(calls.values()), 1)}
                       for course, calls in sorted(courses.items())},
        "size_call_accuracy": sum(right.values()) / max(n, 1),
        "resorbing_margin_caught": margin_turns["caught"] / max(margin_turns["caught"] + margin_turns["missed"], 1),
        "became_ill_defined_without_resorbing": margin_turns["false"],
        "spurious_comparisons_per_pair": spurious / max(n, 1),
        "long_axis_ratio_by_course": {course: sorted(round(r, 3) for r in values)
                                      for course, values in sorted(ratios.items())},
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a table: one line per course."""
    lines = [f"{'course':10s} {'pairs':>5s} {'right':>6s}  calls"]
    for course, entry in report["per_course"].items():
        calls = ", ".join(f"{call} {k}" for call, k in entry["calls"].items())
        lines.append(f"{course:10s} {entry['pairs']:5d} {entry['right']:6.2f}  {calls}")
    lines.append(f"size call right in {report['size_call_accuracy']:.2f} of {report['pairs']} pairs; "
                 f"resorbing deposits called 'became ill defined': {report['resorbing_margin_caught']:.2f}; "
                 f"'became ill defined' elsewhere: {report['became_ill_defined_without_resorbing']}; "
                 f"comparisons on other tendons per pair: {report['spurious_comparisons_per_pair']:.2f}")
    return "\n".join(lines)
