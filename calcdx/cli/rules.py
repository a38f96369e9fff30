"""``calcdx rules``: the rule layer on its own (explain a finding, list or validate the knowledge base)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

from calcdx.findings import Margin, Morphology
from calcdx.taxonomy import PATTERNS, LocationClass

_BOOL = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def _flag(text: str) -> bool:
    try:
        return _BOOL[text.lower()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"expected yes/no, got {text!r}") from exc


def register(subparsers: Any) -> None:
    from calcdx.rules.context import ClinicalContext

    parser = subparsers.add_parser("rules", help="explain a finding with the cited rule layer; list or validate it",
                                   description="The rule layer maps a finding and clinical context to the source "
                                   "documents' differential diagnosis; every rule names its document and section.")
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION")
    explain = sub.add_parser(
        "explain", help="ranked differential with reasons, missing facts, work-up and citations",
        epilog="examples:\n"
        "  calcdx rules explain --pattern hadd --location tendon --site 'supraspinatus tendon' --size-mm 8 \\\n"
        "      --morphology oval --margin well_defined --age 45 --sex F\n"
        "  calcdx rules explain --pattern tumoral_calcinosis --location periarticular --morphology multiloculated \\\n"
        "      --renal-failure yes --serum-phosphate raised --json\n"
        "  calcdx rules explain --input case.yaml    (keys: finding: {...}, context: {...}, age, sex)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("--input", metavar="YAML", help="finding and context as YAML")
    explain.add_argument("--pattern", choices=[p.value for p in PATTERNS])
    explain.add_argument("--probability", type=float, default=0.9)
    explain.add_argument("--location", choices=[loc.value for loc in LocationClass], default="unknown")
    explain.add_argument("--site")
    explain.add_argument("--body-part")
    explain.add_argument("--size-mm", type=float, default=0.0, help="long axis in mm")
    explain.add_argument("--morphology", nargs="*", default=[], choices=[m.value for m in Morphology])
    explain.add_argument("--margin", choices=[m.value for m in Margin], default="unknown")
    explain.add_argument("--count", type=int, default=1)
    explain.add_argument("--distribution", choices=["single", "clustered", "diffuse", "symmetric"])
    explain.add_argument("--age", type=float)
    explain.add_argument("--sex", choices=["F", "M"])
    for f in fields(ClinicalContext):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("serum_calcium", "serum_phosphate", "pth", "vitamin_d"):
            explain.add_argument(flag, choices=["low", "normal", "raised"])
        else:
            explain.add_argument(flag, type=_flag, metavar="yes|no")
    explain.add_argument("--json", action="store_true", help="JSON for scripts")
    explain.add_argument("--kb", help="a custom knowledge base YAML")
    explain.set_defaults(func=run_explain)
    listing = sub.add_parser("list", help="entities of the knowledge base with their citations")
    listing.add_argument("--kb")
    listing.set_defaults(func=run_list)
    validate = sub.add_parser("validate", help="validate a knowledge base file (default: the shipped one)")
    validate.add_argument("kb", nargs="?")
    validate.set_defaults(func=run_validate)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _case(args: argparse.Namespace) -> tuple[Any, Any, float | None, str | None]:
    import yaml

    from calcdx.errors import ConfigError
    from calcdx.findings import Finding
    from calcdx.rules.context import ClinicalContext

    if args.input:
        try:
            with open(args.input, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read case: {exc}", path=args.input) from exc
        finding_data = dict(data.get("finding", {}))
        finding_data.setdefault("probability", 0.9)
        try:
            finding = Finding.from_dict(finding_data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad finding: {exc}", path=args.input) from exc
        context = ClinicalContext.from_mapping(data.get("context", {}) or {}, source=args.input)
        return finding, context, data.get("age"), data.get("sex")
    if not args.pattern:
        raise ConfigError('give --pattern (and other finding flags) or --input CASE.yaml')
    finding = Finding.from_dict({
        "pattern": args.pattern, "probability": args.probability, "location_class": args.location,
        "site": args.site, "body_part": args.body_part, "long_axis_mm": args.size_mm,
        "morphology": args.morphology, "margin": args.margin, "count": args.count, "distribution": args.distribution,
    })
    known = {f.name: getattr(args, f.name) for f in fields(ClinicalContext) if getattr(args, f.name) is not None}
    return finding, ClinicalContext(**known), args.age, args.sex


def run_explain(args: argparse.Namespace) -> int:
    from calcdx.rules import explain, load_knowledge_base

    finding, context, age, sex = _case(args)
    kb = load_knowledge_base(args.kb) if args.kb else None
    diff = explain([finding], context, patient_age_years=age, patient_sex=sex, knowledge_base=kb)
    if args.json:
        json.dump(diff.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"Finding: {finding.pattern.value}, location {finding.location_class.value}"
          f"{', site ' + finding.site if finding.site else ''}"
          f"{f', {finding.long_axis_mm:.0f} mm' if finding.long_axis_mm else ''}"
          f"{', ' + ', '.join(m.value for m in finding.morphology) if finding.morphology else ''}")
    print(f"Known context: {context.known() or 'none'}; age {age if age is not None else 'unknown'}, "
          f"sex {sex or 'unknown'}\n")
    print(diff.to_text(max_entries=6))
    if diff.top:
        print("\nCitations of the first entry:")
        print(f"  {diff.top.citation['document']} § {diff.top.citation['section']}: \"{diff.top.citation['quote']}\"")
    unknown = [m for m in diff.missing_facts if m["impact"] > 0][:5]
    if unknown:
        print("\nFacts that would change the ranking:")
        for m in unknown:
            print(f"  - {m['question']} {m['effect']}")
    print("\nResearch software, not a medical device.")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from calcdx.rules import load_knowledge_base

    kb = load_knowledge_base(args.kb)
    print(f"knowledge base {kb.version}: {len(kb.entities)} entities, "
          f"{sum(len(e.criteria) for e in kb.entities)} criteria")
    for e in kb.entities:
        sec = kb.sections[e.cite]
        print(f"  {e.id:45s} {e.group:28s} {sec['document'][:3]} § {sec['section']}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from calcdx.rules import load_knowledge_base

    kb = load_knowledge_base(args.kb)
    print(f"valid: {kb.path} (version {kb.version}, {len(kb.entities)} entities)")
    return 0
