"""Load and validate the knowledge base (YAML data, checked by a JSON Schema and cross-references)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from calcdx.errors import KnowledgeBaseError
from calcdx.findings import Morphology
from calcdx.taxonomy import PATTERNS, LocationClass

DEFAULT_KB = Path(__file__).with_name("knowledge_base.yaml")
SUBTYPES = ("dystrophic", "metastatic", "idiopathic", "iatrogenic", "calciphylaxis", "osteoma_cutis")

_CITE = {"type": "string", "pattern": "^[A-Z0-9_]+$"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["kb_version", "documents", "sections", "facts", "entities"],
    "properties": {
        "kb_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "title": {"type": "string"},
        "documents": {"type": "object", "additionalProperties": {"type": "string"}},
        "sections": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["document", "section", "quote"],
            "properties": {"document": {"type": "string"}, "section": {"type": "string", "minLength": 3},
                           "quote": {"type": "string", "minLength": 3}, "gloss": {"type": "string"}},
            "additionalProperties": False}},
        "facts": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["type", "question"],
            "properties": {"type": {"enum": ["bool", "enum", "number"]}, "values": {"type": "array"},
                           "question": {"type": "string"}},
            "additionalProperties": False}},
        "entities": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["id", "name", "group", "cite", "prior", "patterns", "locations", "criteria", "workup"],
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                "name": {"type": "string", "minLength": 3},
                "group": {"type": "string"},
                "cite": _CITE,
                "prior": {"type": "number", "minimum": -5, "maximum": 5},
                "patterns": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number"}},
                "locations": {"type": "object", "additionalProperties": {"type": "number"}},
                "calcinosis_cutis_subtype": {"enum": list(SUBTYPES)},
                "criteria": {"type": "array", "items": {
                    "type": "object", "required": ["when", "w", "why", "cite"],
                    "properties": {"when": {"type": "string"}, "w": {"type": "number"}, "why": {"type": "string"},
                                   "cite": _CITE},
                    "additionalProperties": False}},
                "workup": {"type": "array", "items": {
                    "type": "object", "required": ["text", "cite"],
                    "properties": {"text": {"type": "string"}, "cite": _CITE}, "additionalProperties": False}},
            },
            "additionalProperties": False,
        }},
    },
    "additionalProperties": False,
}

_COND = re.compile(
    r"^(?P<neg>not\s+)?(?P<feature>age|sex|location|site|body_part|morphology|margin|size_mm|count|distribution|"
    r"ctx\.[a-z_]+)(?:\s*(?P<op><=|>=|==|<|>|~|in|has)\s*(?P<value>.+))?$"
)


@dataclass(frozen=True)
class Condition:
    """A parsed ``when``: feature, operator and value (``op`` "is" for a bare context flag)."""

    feature: str
    op: str
    value: Any
    text: str


@dataclass(frozen=True)
class Criterion:
    condition: Condition
    weight: float
    why: str
    cite: str


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    group: str
    cite: str
    prior: float
    patterns: dict[str, float]
    locations: dict[str, float]
    criteria: tuple[Criterion, ...]
    workup: tuple[tuple[str, str], ...]
    subtype: str | None


@dataclass(frozen=True)
class KnowledgeBase:
    version: str
    documents: dict[str, str]
    sections: dict[str, dict[str, str]]
    facts: dict[str, dict[str, Any]]
    entities: tuple[Entity, ...]
    path: str

    def citation(self, key: str) -> dict[str, str]:
        """{"key", "document", "section", "quote", "gloss"} for a section key."""
        return {"key": key, **self.sections[key]}

    @cached_property
    def by_id(self) -> dict[str, Entity]:
        """Entity id -> entity."""
        return {e.id: e for e in self.entities}

    @cached_property
    def order(self) -> dict[str, int]:
        """Entity id -> position in the knowledge base (the tie-break of rankings)."""
        return {e.id: i for i, e in enumerate(self.entities)}

    def entity(self, entity_id: str) -> Entity:
        return self.by_id[entity_id]

    @cached_property
    def explanations(self) -> dict[tuple[Any, ...], Any]:
        """The engine's memory of rankings by signature (``calcdx.rules.engine._ranked``)."""
        return {}


def parse_condition(text: str, *, where: str) -> Condition:
    """Parse one ``when`` string (grammar in knowledge_base.yaml)."""
    m = _COND.match(text.strip())
    if not m:
        raise KnowledgeBaseError(f"{where}: cannot parse condition {text!r}")
    feature, op, raw = m.group("feature"), m.group("op"), m.group("value")
    if op is None:
        if not feature.startswith("ctx."):
            raise KnowledgeBaseError(f"{where}: condition {text!r} needs an operator")
        return Condition(feature, "is", not bool(m.group("neg")), text)
    raw = raw.strip()
    value: Any
    if op == "in":
        if not (raw.startswith("[") and raw.endswith("]")):
            raise KnowledgeBaseError(f"{where}: 'in' needs a [list] in {text!r}")
        value = tuple(v.strip() for v in raw[1:-1].split(",") if v.strip())
    elif op in {"<", ">", "<=", ">="}:
        try:
            value = float(raw)
        except ValueError as exc:
            raise KnowledgeBaseError(f"{where}: {op} needs a number in {text!r}") from exc
    elif raw in {"true", "false"}:
        value = raw == "true"
    else:
        value = raw
    if feature == "morphology" and value not in {m.value for m in Morphology}:
        raise KnowledgeBaseError(f"{where}: unknown morphology {value!r} (known: "
                                 f"{', '.join(m.value for m in Morphology)})")
    if feature == "location":
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if v not in {loc.value for loc in LocationClass}:
                raise KnowledgeBaseError(f"{where}: unknown location {v!r}")
    return Condition(feature, op, value, text)


def _build(data: dict[str, Any], path: str) -> KnowledgeBase:
    try:
        jsonschema.validate(data, SCHEMA)
    except jsonschema.ValidationError as exc:
        loc = "/".join(str(p) for p in exc.absolute_path)
        entity = ""
        if len(exc.absolute_path) >= 2 and exc.absolute_path[0] == "entities":
            try:
                entity = f" (entity {data['entities'][exc.absolute_path[1]].get('id', '?')!r})"
            except (IndexError, AttributeError, TypeError):
                entity = ""
        raise KnowledgeBaseError(f"schema error at {loc or '<root>'}{entity}: {exc.message}", path=path) from exc
    sections = data["sections"]
    for key, sec in sections.items():
        if sec["document"] not in data["documents"]:
            raise KnowledgeBaseError(f"section {key!r} cites unknown document {sec['document']!r}", path=path)
    pattern_names = {p.value for p in PATTERNS}
    entities: list[Entity] = []
    seen: set[str] = set()
    for raw in data["entities"]:
        eid = raw["id"]
        where = f"entity {eid!r}"
        if eid in seen:
            raise KnowledgeBaseError(f"{where}: duplicate id", path=path)
        seen.add(eid)
        for key in [raw["cite"], *(c["cite"] for c in raw["criteria"]), *(w["cite"] for w in raw["workup"])]:
            if key not in sections:
                raise KnowledgeBaseError(f"{where}: cites unknown section {key!r}", path=path)
        unknown = set(raw["patterns"]) - pattern_names
        if unknown:
            raise KnowledgeBaseError(f"{where}: unknown pattern(s) {sorted(unknown)}", path=path)
        bad_loc = set(raw["locations"]) - {loc.value for loc in LocationClass}
        if bad_loc:
            raise KnowledgeBaseError(f"{where}: unknown location(s) {sorted(bad_loc)}", path=path)
        criteria = []
        for c in raw["criteria"]:
            try:
                cond = parse_condition(c["when"], where=where)
            except KnowledgeBaseError as exc:
                raise KnowledgeBaseError(exc.reason, path=path) from exc
            if cond.feature.startswith("ctx.") and cond.feature not in data["facts"]:
                raise KnowledgeBaseError(f"{where}: condition {c['when']!r} uses unknown fact {cond.feature!r}",
                                         path=path)
            criteria.append(Criterion(cond, float(c["w"]), c["why"], c["cite"]))
        entities.append(Entity(
            id=eid, name=raw["name"], group=raw["group"], cite=raw["cite"], prior=float(raw["prior"]),
            patterns={k: float(v) for k, v in raw["patterns"].items()},
            locations={k: float(v) for k, v in raw["locations"].items()}, criteria=tuple(criteria),
            workup=tuple((w["text"], w["cite"]) for w in raw["workup"]), subtype=raw.get("calcinosis_cutis_subtype"),
        ))
    return KnowledgeBase(version=data["kb_version"], documents=data["documents"], sections=sections,
                         facts=data["facts"], entities=tuple(entities), path=path)


def load_knowledge_base(path: str | Path | None = None) -> KnowledgeBase:
    """Load and validate a knowledge base (default: the one shipped with calcdx).

    Raises:
        KnowledgeBaseError: unreadable YAML or any schema / cross-reference error, naming the entry.
    """
    if path is None:
        return _default()
    return _load(Path(path))


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (its wheels are): the shipped knowledge base in 21
against 137 ms, the same data; a batch loads it once, before its first differential."""


def _load(path: Path) -> KnowledgeBase:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeBaseError(f"cannot read knowledge base: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise KnowledgeBaseError("knowledge base must be a mapping", path=path)
    return _build(data, str(path))


@lru_cache(maxsize=1)
def _default() -> KnowledgeBase:
    return _load(DEFAULT_KB)
