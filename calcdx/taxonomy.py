"""Names shared by every stage: the six patterns, the hard negatives, location classes.

One place defines them; the simulator, the model card, the findings, the rule layer and
the writers all import from here.  Codes for the DICOM SR are private-scheme codes
(``99CALCDX``) with SNOMED CT codes where one fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Pattern(StrEnum):
    """The six calcification patterns the model labels (model classes, in this order)."""

    HADD = "hadd"
    CPPD = "cppd"
    TUMORAL_CALCINOSIS = "tumoral_calcinosis"
    PHLEBOLITH = "phlebolith"
    MYOSITIS_OSSIFICANS = "myositis_ossificans"
    CALCINOSIS_UNIVERSALIS = "calcinosis_universalis"


PATTERNS: tuple[Pattern, ...] = tuple(Pattern)
"""Model class order.  Never reorder: checkpoints store class names, but SR codes rely on it."""


class HardNegative(StrEnum):
    """Look-alikes the simulator draws and the rule layer knows; none is a model class."""

    ARTERIAL_INTIMAL = "arterial_intimal"
    ARTERIAL_MEDIAL = "arterial_medial"
    ENTHESOPHYTE = "enthesophyte"
    OSTEOPHYTE = "osteophyte"
    SYNOVIAL_OSTEOCHONDROMATOSIS = "synovial_osteochondromatosis"
    GOUT_TOPHUS = "gout_tophus"
    CYSTICERCOSIS = "cysticercosis"
    INJECTION_GRANULOMA = "injection_granuloma"
    FOREIGN_BODY = "foreign_body"
    JEWELLERY = "jewellery"
    SKIN_FOLD = "skin_fold"
    LEAD_MARKER = "lead_marker"


LOOK_ALIKE_GROUPS: tuple[str, ...] = ("arterial", "bony_spur", "osteochondromatosis", "gout_tophus", "cysticercosis",
                                      "injection_granuloma", "foreign_body", "skin_fold")
"""The simulator's look-alike renderers, drawn at random (``calcdx simulate --look-alikes``); one
renderer may draw several kinds (``arterial``: intimal or medial; ``bony_spur``: enthesophyte or
osteophyte; ``foreign_body``: foreign body or jewellery).  The lead marker is drawn apart."""


class LocationClass(StrEnum):
    """Where a finding sits, as the rule layer needs it (seed 003's organisation)."""

    TENDON = "tendon"
    INTRA_ARTICULAR = "intra_articular"  # cartilage / joint
    PERIARTICULAR = "periarticular"
    INTRAMUSCULAR = "intramuscular"
    SUBCUTANEOUS = "subcutaneous"
    VASCULAR = "vascular"
    UNKNOWN = "unknown"


class Region(StrEnum):
    """Body regions the simulator renders and the model was trained on."""

    SHOULDER = "shoulder"
    KNEE = "knee"
    HIP_PELVIS = "hip_pelvis"
    HAND_WRIST = "hand_wrist"
    THIGH_LEG = "thigh_leg"


@dataclass(frozen=True, slots=True)
class CodedConcept:
    """A (value, scheme, meaning) triple for DICOM SR content items."""

    value: str
    scheme: str
    meaning: str


PATTERN_CODES: dict[Pattern, CodedConcept] = {
    Pattern.HADD: CodedConcept("CDX001", "99CALCDX", "Calcific tendinopathy (HADD) pattern"),
    Pattern.CPPD: CodedConcept("CDX002", "99CALCDX", "Chondrocalcinosis (CPPD) pattern"),
    Pattern.TUMORAL_CALCINOSIS: CodedConcept("CDX003", "99CALCDX", "Tumoral calcinosis pattern"),
    Pattern.PHLEBOLITH: CodedConcept("CDX004", "99CALCDX", "Phlebolith pattern"),
    Pattern.MYOSITIS_OSSIFICANS: CodedConcept("CDX005", "99CALCDX", "Myositis ossificans pattern"),
    Pattern.CALCINOSIS_UNIVERSALIS: CodedConcept("CDX006", "99CALCDX", "Calcinosis universalis pattern"),
}

PATTERN_DISPLAY: dict[Pattern, str] = {
    Pattern.HADD: "HADD (calcific tendinopathy)",
    Pattern.CPPD: "CPPD (chondrocalcinosis)",
    Pattern.TUMORAL_CALCINOSIS: "Tumoral calcinosis",
    Pattern.PHLEBOLITH: "Phleboliths",
    Pattern.MYOSITIS_OSSIFICANS: "Myositis ossificans",
    Pattern.CALCINOSIS_UNIVERSALIS: "Calcinosis universalis",
}
