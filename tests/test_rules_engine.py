"""Rule layer mechanics: schema validation, coverage, honesty about missing facts, determinism, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from calcdx.cli.main import main
from calcdx.errors import ConfigError, KnowledgeBaseError
from calcdx.findings import Finding, Morphology
from calcdx.rules import ClinicalContext, combine_differentials, explain, explain_study, load_knowledge_base
from calcdx.rules.kb import DEFAULT_KB, Entity
from calcdx.taxonomy import LocationClass, Pattern

KB_DATA = yaml.safe_load(DEFAULT_KB.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "kb.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _copy() -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(KB_DATA))


def test_shipped_knowledge_base_is_valid_and_fully_cited() -> None:
    kb = load_knowledge_base()
    assert len(kb.entities) >= 40
    keys = {e.cite for e in kb.entities} | {c.cite for e in kb.entities for c in e.criteria} | {
        w[1] for e in kb.entities for w in e.workup}
    documents = {kb.sections[k]["document"] for k in keys}
    assert documents == set(kb.documents)  # every source document is used
    for e in kb.entities:
        assert e.workup, e.id
        for c in e.criteria:
            assert kb.sections[c.cite]["quote"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["entities"][0].pop("cite"), "entity 'hadd_calcific_tendinopathy'"),
    (lambda d: d["entities"][1]["criteria"][0].update(cite="NOWHERE"), "entity 'degenerative_enthesopathy'"),
    (lambda d: d["entities"][2]["criteria"][0].update(when="age is old"), "cannot parse condition"),
    (lambda d: d["entities"][3]["patterns"].update(gout=1), "unknown pattern"),
    (lambda d: d["entities"][4]["criteria"].append(
        {"when": "morphology has starry", "w": 1, "why": "x", "cite": "D003_HADD"}), "unknown morphology"),
    (lambda d: d["entities"].append(dict(d["entities"][0])), "duplicate id"),
    (lambda d: d["entities"][5]["criteria"].append(
        {"when": "ctx.has_cat", "w": 1, "why": "x", "cite": "D003_HADD"}), "unknown fact"),
    (lambda d: d.update(kb_version="one"), "kb_version"),
    (lambda d: d["sections"]["D003_HADD"].update(document="999"), "unknown document"),
])
def test_malformed_knowledge_bases_are_rejected_naming_the_entry(tmp_path: Path, mutate: Any, message: str) -> None:
    data = _copy()
    mutate(data)
    with pytest.raises(KnowledgeBaseError, match=message) as info:
        load_knowledge_base(_write(tmp_path, data))
    assert "kb.yaml" in str(info.value)


def _best_case(e: Entity) -> tuple[Finding, ClinicalContext, float | None]:
    pattern = max(e.patterns, key=lambda p: e.patterns[p])
    location = max(e.locations, key=lambda loc: e.locations[loc]) if e.locations else "unknown"
    morph, ctx, age, body = [], {}, None, None
    count = 1
    for c in e.criteria:
        cond = c.condition
        if c.weight <= 0:
            continue
        if cond.feature == "morphology":
            morph.append(Morphology(cond.value))
        elif cond.feature.startswith("ctx."):
            ctx[cond.feature[4:]] = cond.value if cond.op in ("is", "==") else True
        elif cond.feature == "age" and age is None:
            age = cond.value - 1 if cond.op in ("<", "<=") else cond.value + 1
        elif cond.feature == "body_part" and body is None:
            body = cond.value[0]
        elif cond.feature == "count":
            count = int(cond.value) + 1
    finding = Finding(pattern=Pattern(pattern), probability=0.9, location_class=LocationClass(location),
                      morphology=tuple(morph), body_part=body, count=count)
    return finding, ClinicalContext(**ctx), age


@pytest.mark.parametrize("entity", load_knowledge_base().entities, ids=lambda e: e.id)
def test_every_entity_is_reachable(entity: Entity) -> None:
    finding, context, age = _best_case(entity)
    diff = explain([finding], context, patient_age_years=age)
    top3 = [e.entity_id for e in diff.entries[:3]]
    assert entity.id in top3, top3


@pytest.mark.parametrize("entity", load_knowledge_base().entities, ids=lambda e: e.id)
def test_ranking_entries_serialise_as_dataclasses_asdict_would(entity: Entity) -> None:
    from dataclasses import asdict

    finding, context, age = _best_case(entity)
    for entry in explain([finding], context, patient_age_years=age).entries:
        as_dict = entry.to_dict()
        assert as_dict == asdict(entry)
        assert as_dict["citation"] is not entry.citation  # a copy, as asdict's


@pytest.mark.parametrize("entity", load_knowledge_base().entities[:6], ids=lambda e: e.id)
def test_recorded_inputs_equal_dataclasses_asdict(entity: Entity) -> None:
    from dataclasses import asdict

    from calcdx.rules.engine import Facts

    finding, context, age = _best_case(entity)
    diff = explain([finding], context, patient_age_years=age)
    facts = Facts.from_finding(finding, context, age, None)
    assert diff.inputs["finding"] == {k: v for k, v in asdict(facts).items() if k != "context"}
    assert diff.inputs["context"] == {k: v for k, v in asdict(context).items() if v is not None}


def test_missing_context_is_reported_with_its_effect() -> None:
    finding = Finding(Pattern.TUMORAL_CALCINOSIS, 0.9, location_class=LocationClass.PERIARTICULAR,
                      morphology=(Morphology.MULTILOCULATED,))
    diff = explain([finding])
    facts = {m["fact"] for m in diff.missing_facts}
    assert {"ctx.renal_failure", "ctx.serum_phosphate", "age"} <= facts
    assert diff.most_informative is not None
    assert "would rank first" in diff.most_informative["effect"]
    text = diff.to_text()
    assert "Most informative missing fact" in text
    # giving the fact changes the answer as announced
    informed = explain([finding], ClinicalContext(renal_failure=True, serum_phosphate="raised"), patient_age_years=60)
    assert informed.top.entity_id == "metabolic_calcinosis_renal"


def test_explain_is_deterministic() -> None:
    finding = Finding(Pattern.HADD, 0.8, location_class=LocationClass.TENDON, morphology=(Morphology.OVAL,))
    a = json.dumps(explain([finding]).to_dict(), sort_keys=True)
    b = json.dumps(explain([finding]).to_dict(), sort_keys=True)
    assert a == b


def test_calcinosis_cutis_subtype_for_subcutaneous_findings() -> None:
    finding = Finding(Pattern.CALCINOSIS_UNIVERSALIS, 0.9, location_class=LocationClass.SUBCUTANEOUS)
    diff = explain([finding], ClinicalContext(iv_calcium=True))
    assert diff.calcinosis_cutis_subtype["subtype"] == "iatrogenic"
    diff = explain([finding], ClinicalContext(serum_phosphate="raised", renal_failure=True))
    assert diff.calcinosis_cutis_subtype["subtype"] == "metastatic"


def test_study_level_prefers_one_disease_explaining_several_findings() -> None:
    tumoral = Finding(Pattern.TUMORAL_CALCINOSIS, 0.9, location_class=LocationClass.PERIARTICULAR)
    vessels = Finding(Pattern.CALCINOSIS_UNIVERSALIS, 0.7, location_class=LocationClass.SUBCUTANEOUS)
    study = explain_study([tumoral, vessels], ClinicalContext(renal_failure=True))
    assert study.top.entity_id == "metabolic_calcinosis_renal"
    assert any("other finding" in ev.text for ev in study.top.matched)


def test_combining_per_finding_differentials_equals_explaining_the_study() -> None:
    findings = [Finding(Pattern.TUMORAL_CALCINOSIS, 0.9, location_class=LocationClass.PERIARTICULAR),
                Finding(Pattern.CALCINOSIS_UNIVERSALIS, 0.7, location_class=LocationClass.SUBCUTANEOUS),
                Finding(Pattern.PHLEBOLITH, 0.8, location_class=LocationClass.VASCULAR, long_axis_mm=4.0)]
    context = ClinicalContext(renal_failure=True)
    per = [explain([f], context, patient_age_years=61) for f in findings]
    combined = combine_differentials(per, context)
    assert combined.to_dict() == explain_study(findings, context, patient_age_years=61).to_dict()


def test_context_validation() -> None:
    with pytest.raises(ConfigError, match="serum_phosphate"):
        ClinicalContext(serum_phosphate="high")
    with pytest.raises(ConfigError, match="unknown clinical context field"):
        ClinicalContext.from_mapping({"dialysis": True})


def test_cli_explain_flags_json_and_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "explain", "--pattern", "tumoral_calcinosis", "--location", "periarticular",
                 "--morphology", "multiloculated", "--renal-failure", "yes", "--serum-phosphate", "raised",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ranking"][0]["entity_id"] == "metabolic_calcinosis_renal"
    assert data["ranking"][0]["citation"]["document"] == "003_4d307f20d16940dc"
    case = tmp_path / "case.yaml"
    case.write_text("finding:\n  pattern: myositis_ossificans\n  location_class: intramuscular\n"
                    "  morphology: [central_mineralisation]\ncontext:\n  soft_tissue_mass: true\nage: 40\n")
    assert main(["rules", "explain", "--input", str(case)]) == 0
    out = capsys.readouterr().out
    assert "osteosarcoma" in out and "Tumoren van zacht weefsel" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("finding: {pattern: hadd}\ncontext: {dialysis: true}\n")
    assert main(["rules", "explain", "--input", str(bad)]) == 2
    assert "unknown clinical context field" in capsys.readouterr().err


def test_cli_as_installed_script() -> None:
    exe = Path(sys.executable).with_name("calcdx")
    out = subprocess.run([str(exe), "rules", "explain", "--pattern", "hadd", "--location", "tendon", "--site",
                          "supraspinatus tendon", "--size-mm", "8", "--morphology", "oval", "--age", "45"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[3].startswith("1. Calcific tendinopathy")
    assert "Report the tendon involved, the size and the margins" in out
    listing = subprocess.run([str(exe), "rules", "list"], capture_output=True, text=True, check=True).stdout
    assert "hadd_calcific_tendinopathy" in listing


def test_counterfactual_reranking_equals_a_full_ranking() -> None:
    """``_missing`` rescoring only the entities that look at the toggled fact gives ``_rank``'s answer."""
    from calcdx.rules.engine import Facts, _rank, _rerank

    kb = load_knowledge_base()
    features = sorted({c.condition.feature for e in kb.entities for c in e.criteria})
    checked = 0
    for pattern in Pattern:
        facts = Facts(pattern=pattern.value, location=None, site=None, body_part=None, morphology=(), margin=None,
                      size_mm=None, count=None, distribution=None, age=None, sex=None, context=ClinicalContext())
        ranking = _rank(facts, kb)
        for feature in features:
            spec = kb.facts.get(feature, {})
            for value in [True, False] if spec.get("type") == "bool" else list(spec.get("values", []))[:4]:
                alt = facts.with_value(feature, value)
                assert _rerank(alt, feature, ranking, kb) == _rank(alt, kb), (pattern, feature, value)
                checked += 1
    assert checked > 50


def test_remembered_rankings_equal_fresh_ones_for_varied_findings() -> None:
    """``explain`` remembers rankings by signature; every answer equals a fresh evaluation."""
    import random

    from calcdx.findings import Margin
    from calcdx.rules.engine import Facts, _missing, _rank, _subtype

    kb = load_knowledge_base()
    kb.explanations.clear()
    rng = random.Random(3)
    contexts = [ClinicalContext(), ClinicalContext(renal_failure=True, serum_phosphate="raised"),
                ClinicalContext(systemic_sclerosis=True), ClinicalContext(trauma_or_surgery=False)]
    for _ in range(300):
        finding = Finding(pattern=rng.choice(list(Pattern)), probability=0.9,
                          location_class=rng.choice(list(LocationClass)), long_axis_mm=rng.uniform(0.5, 120),
                          count=rng.choice([1, 1, 2, 5, 30]), margin=rng.choice(list(Margin)),
                          morphology=tuple(rng.sample(list(Morphology), rng.randint(0, 2))),
                          body_part=rng.choice(["shoulder", "knee", "hip_pelvis", "hand_wrist", "thigh_leg", None]))
        context, age, sex = rng.choice(contexts), rng.choice([None, 25.0, 70.0]), rng.choice([None, "F", "M"])
        diff = explain([finding], context, patient_age_years=age, patient_sex=sex)
        facts = Facts.from_finding(finding, context, age, sex)
        ranking = _rank(facts, kb)
        missing, most = _missing(facts, ranking, kb)
        assert [e.to_dict() for e in diff.entries] == [e.to_dict() for e in ranking]
        assert (diff.missing_facts, diff.most_informative) == (missing, most)
        assert diff.calcinosis_cutis_subtype == _subtype(facts, ranking)
    assert 0 < len(kb.explanations) < 300  # findings that differ only in measured values share one
