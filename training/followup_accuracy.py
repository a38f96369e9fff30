"""How right the follow-up comparison is: ``calcdx followup`` against the simulator's known courses.

``calcdx simulate --follow-ups`` renders, for each case with HADD, the same patient's follow-up study
with the deposit ``stable``, ``larger``, ``smaller``, ``resolved`` or ``resorbing``
(``calcdx.datasets.simulator.follow_up``).  Each follow-up's annotations name its prior study and the
course; the deposit's tendon is the prior's HADD lesion's ``site``.  Here every such pair is looked up
in the comparisons (by patient, prior and current study, and tendon) and the call is set against the
the call the comparison's own rule makes on the true long axes (the lesion masks' in the prior and the
follow-up): mostly ``larger``/``smaller``/``stable`` as the course says, but a deposit that shrank by
x0.6 from 3 mm moved less than ``CHANGE_MM`` and is ``stable``, and a resorbing deposit grows a comet
tail; ``resolved`` should be ``not_seen``.  A resorbing deposit should also be called ``became ill
defined``.  Comparisons on other tendons of the same pair are counted as spurious.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calcdx.datasets.manifest import ManifestRow
from calcdx.inference.followup import DepositChange, size_call


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
    current_long_axis_mm: float | None  # None: resolved

    @property
    def expected(self) -> str:
        """The call the comparison's rule makes on the true long axes."""
        if self.current_long_axis_mm is None:
            return "not_seen"
        return size_call(self.prior_long_axis_mm, self.current_long_axis_mm)


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
        now = next((les for les in annotation["lesions"] if les["kind"] == "hadd"), None)
        truths.append(PairTruth(row.patient_id, str(prior.study_uid), str(row.study_uid), hadd["site"],
                                follow["course"], float(follow["size_factor"]), float(hadd["size_mm"][0]),
                                float(now["size_mm"][0]) if now else None))
    return truths


def score_followup(truths: list[PairTruth], changes: list[DepositChange]) -> dict[str, Any]:
    """Per course: pairs, the calls they got, share right; size-call accuracy; margin turns caught; spurious."""
    by_pair: dict[tuple[str, str], list[DepositChange]] = {}
    for change in changes:
        by_pair.setdefault((change.prior_study_uid, change.current_study_uid), []).append(change)
    courses: dict[str, Counter[str]] = {}
    expected: dict[str, Counter[str]] = {}
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
        expected.setdefault(truth.course, Counter())[truth.expected] += 1
        right[truth.course] += call == truth.expected
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
                                "expected": dict(expected[course].most_common()),
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
    lines = [f"{'course':10s} {'pairs':>5s} {'right':>6s}  calls (expected on the true sizes)"]
    for course, entry in report["per_course"].items():
        calls = ", ".join(f"{call} {k}" for call, k in entry["calls"].items())
        expected = ", ".join(f"{call} {k}" for call, k in entry["expected"].items())
        lines.append(f"{course:10s} {entry['pairs']:5d} {entry['right']:6.2f}  {calls} ({expected})")
    lines.append(f"size call right in {report['size_call_accuracy']:.2f} of {report['pairs']} pairs; "
                 f"resorbing deposits called 'became ill defined': {report['resorbing_margin_caught']:.2f}; "
                 f"'became ill defined' elsewhere: {report['became_ill_defined_without_resorbing']}; "
                 f"comparisons on other tendons per pair: {report['spurious_comparisons_per_pair']:.2f}")
    return "\n".join(lines)
