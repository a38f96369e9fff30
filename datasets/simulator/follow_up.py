"""Follow-up radiographs: the same patient months later, with a known course of the HADD deposit.

The seed asks the radiologist to report a HADD deposit with its tendon, size and margin "for comparison
with follow-up".  To measure how well ``calcdx followup`` compares, the simulator renders, for a case
with HADD, a second study of the same patient: same anatomy, side, projection and detector spacing,
positioned again (a new rotation), exposed and processed afresh (a new acquisition), its deposit in the
same tendon but changed by one of ``Course``.  Everything else in the image (other patterns, look-alikes)
is drawn again as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

FOLLOW_UP_STREAM = 1
"""Third word of the follow-up's seed sequence ``[seed, index, 1]`` (the prior's is ``[seed, index]``)."""


class Course(StrEnum):
    """What happened to the deposit between the prior and the follow-up (the ground truth)."""

    STABLE = "stable"
    LARGER = "larger"
    SMALLER = "smaller"
    RESOLVED = "resolved"
    RESORBING = "resorbing"  # formative (well defined) -> resorptive (ill defined, fluffy), same size


COURSE_P: dict[str, dict[Course, float]] = {
    "formative_resting": {Course.STABLE: 0.3, Course.LARGER: 0.2, Course.SMALLER: 0.2, Course.RESOLVED: 0.1,
                          Course.RESORBING: 0.2},
    "resorptive": {Course.STABLE: 0.35, Course.LARGER: 0.15, Course.SMALLER: 0.3, Course.RESOLVED: 0.2},
}
"""Courses drawn per phase of the prior deposit: a resorptive deposit cannot start resorbing again."""
SIZE_FACTOR: dict[Course, tuple[float, float]] = {Course.LARGER: (1.4, 1.9), Course.SMALLER: (0.4, 0.65)}
"""Range of the factor on the deposit's length and width; 1 for the other courses."""
INTERVAL_DAYS = (60, 400)


@dataclass(frozen=True)
class DepositChange:
    """How the follow-up's deposit differs from the prior's (``patterns.hadd`` applies it)."""

    course: Course
    size_factor: float = 1.0
    resorptive: bool | None = None  # None: the prior's phase


@dataclass(frozen=True)
class FollowUp:
    """The follow-up study of one case: its course and how long after the prior it was taken."""

    change: DepositChange
    interval_days: int


def follow_up_streams(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The follow-up's own (nuisance, noise, course) streams, independent of the prior's."""
    child = np.random.SeedSequence([seed, index, FOLLOW_UP_STREAM])
    nuisance, noise, course = (np.random.default_rng(s) for s in child.spawn(3))
    return nuisance, noise, course


def sample_follow_up(rng: np.random.Generator, prior_variant: str) -> FollowUp:
    """A course for a prior deposit of ``prior_variant`` (``formative_resting`` or ``resorptive``)."""
    table = COURSE_P.get(prior_variant, COURSE_P["formative_resting"])
    courses = list(table)
    course = courses[int(rng.choice(len(courses), p=np.array(list(table.values()))))]
    low, high = SIZE_FACTOR.get(course, (1.0, 1.0))
    factor = float(rng.uniform(low, high)) if high > low else 1.0
    change = DepositChange(course, factor, True if course is Course.RESORBING else None)
    return FollowUp(change, int(rng.integers(INTERVAL_DAYS[0], INTERVAL_DAYS[1] + 1)))
