"""Clinical context a user can pass to the rule layer.  Every field is optional: None = unknown.

The knowledge base's ``facts`` section names the same fields, their possible values and
the question to ask; the engine uses that to say which missing fact would most change
the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from calcdx.errors import ConfigError

LAB_VALUES = ("low", "normal", "raised")


@dataclass(frozen=True)
class ClinicalContext:
    """Facts about the patient beyond the image.

    Labs are "low" | "normal" | "raised"; flags are True/False; None means not known.
    """

    serum_calcium: str | None = None
    serum_phosphate: str | None = None
    pth: str | None = None
    vitamin_d: str | None = None
    renal_failure: bool | None = None  # chronic renal failure / haemodialysis
    systemic_sclerosis: bool | None = None
    dermatomyositis: bool | None = None  # or polymyositis
    mctd_or_sle: bool | None = None
    spondyloarthritis: bool | None = None  # psoriatic, ankylosing spondylitis, reactive; or DISH
    trauma_or_surgery: bool | None = None
    burns: bool | None = None
    recent_injection: bool | None = None  # corticosteroid or other injection at the site
    iv_calcium: bool | None = None  # calcium infusion / extravasation
    venous_malformation: bool | None = None
    venous_insufficiency: bool | None = None
    fever_or_inflammation: bool | None = None
    neurological_disorder: bool | None = None
    joint_destruction: bool | None = None
    bone_erosion: bool | None = None
    acro_osteolysis: bool | None = None
    skin_atrophy: bool | None = None
    soft_tissue_mass: bool | None = None
    known_malignancy: bool | None = None
    prior_tumour_treatment: bool | None = None  # chemotherapy or radiotherapy
    known_gout: bool | None = None
    chondrocalcinosis_elsewhere: bool | None = None
    granulomatous_disease: bool | None = None  # sarcoidosis, tuberculosis
    hereditary_ossification: bool | None = None  # FOP / POH family history or diagnosis
    skin_ulceration: bool | None = None
    african_ancestry: bool | None = None

    def __post_init__(self) -> None:
        for name in ("serum_calcium", "serum_phosphate", "pth", "vitamin_d"):
            value = getattr(self, name)
            if value is not None and value not in LAB_VALUES:
                raise ConfigError(f'Argument "{name}" should be one of {", ".join(LAB_VALUES)} or unknown, '
                                  f"got {value!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("serum_calcium", "serum_phosphate", "pth", "vitamin_d") and value is not None \
                    and not isinstance(value, bool):
                raise ConfigError(f'Argument "{f.name}" should be true, false or unknown, got {value!r}')

    def known(self) -> dict[str, Any]:
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str | None = None) -> ClinicalContext:
        """Build from a dict (YAML); unknown keys raise ConfigError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown clinical context field(s): {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(names))})", path=source)
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ClinicalContext:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read clinical context: {exc}", path=path) from exc
        if not isinstance(data, dict):
            raise ConfigError("clinical context YAML must be a mapping", path=path)
        return cls.from_mapping(data.get("context", data), source=str(path))
