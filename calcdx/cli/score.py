"""``calcdx score RESULTS MANIFEST --out DIR``: the findings of a ``calcdx predict`` run against per-lesion truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score", help="score the findings of a predict run against per-lesion ground truth",
        description="Matches every finding in a 'calcdx predict' output folder to the lesions of the manifest's "
                    "annotations (the simulator writes them; the format is in docs/simulator.md) and writes "
                    "DIR/findings_report.json (per pattern: lesion sensitivity and false positives per image at "
                    "the 'possible' and 'definite' operating points, what the false positives sit on, the errors "
                    "of long and short axis, centroid, margin, tendon, location class and count), DIR/findings.csv and "
                    "DIR/lesions.csv.",
        epilog="example:\n  calcdx simulate --n 300 --seed 7 --out sim/\n  calcdx predict sim/ --out results/\n"
               "  calcdx score results/ sim/manifest.csv --out score/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="output folder of 'calcdx predict'")
    parser.add_argument("manifest", help="manifest CSV whose rows have an 'annotations' file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tolerance-mm", type=float, default=None, metavar="MM",
                        help="how far outside a box a centroid may fall and still hit (default 5 mm)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.datasets.manifest import read_manifest
    from calcdx.errors import ConfigError
    from calcdx.training.finding_accuracy import DEFAULT_TOLERANCE_MM, score_results, summarise, write_tables

    results = Path(args.results)
    if not results.is_dir():
        raise ConfigError(f'results folder "{results}" does not exist (run "calcdx predict ... --out {results}" first)')
    tolerance = DEFAULT_TOLERANCE_MM if args.tolerance_mm is None else float(args.tolerance_mm)
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance-mm must be 0 or more, got {args.tolerance_mm}")
    findings, lesions, statuses = score_results(results, read_manifest(args.manifest), tolerance_mm=tolerance)
    report = summarise(findings, lesions, statuses, tolerance_mm=tolerance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    write_tables(out, findings, lesions)
    print(format_table(report))
    print("median (90th percentile) over the lesions found at 'possible' or above; margin, site (HADD: tendon; "
          "CPPD: cartilage or tendon), location class and count: share that agree\n"
          + "\n".join(measurement_lines(report)))
    print("\n".join(size_lines(report)))
    print(f"report written to {out}")
    return 0


def format_table(report: dict[str, Any]) -> str:
    """A short plain-text table of the report: one line per pattern."""
    lines = [f"{report['n_images']} images ({report['images_missing']} without a result, "
             f"{report['images_not_analyzed']} not analysed), {report['n_lesions']} lesions, {report['n_findings']} "
             f"findings (hit: centroid within {report['tolerance_mm']:g} mm of the other's box)",
             f"{'pattern':24s} {'lesions':>7s} {'sens poss/def':>14s} {'FP/img poss/def':>16s} "
             f"{'long axis ratio':>16s} {'centroid mm':>12s}"]

    def number(value: float | None, fmt: str = ".2f") -> str:
        return "-" if value is None else format(value, fmt)

    for name, p in report["per_pattern"].items():
        m = p["measurement"]
        lines.append(f"{name:24s} {p['lesions']:7d} "
                     f"{number(p['possible']['sensitivity']):>6s} / {number(p['definite']['sensitivity']):5s} "
                     f"{number(p['possible']['false_positives_per_image'], '.3f'):>7s} / "
                     f"{number(p['definite']['false_positives_per_image'], '.3f'):6s} "
                     f"{number(m['long_axis_ratio']['median']):>16s} {number(m['centroid_error_mm']['median']):>12s}")
    return "\n".join(lines)


def measurement_lines(report: dict[str, Any]) -> list[str]:
    """One line per pattern: size ratios, centroid error and the shares that agree (margin, tendon, ...)."""
    def q(entry: dict[str, Any]) -> str:
        return "-" if entry["median"] is None else f"{entry['median']:.2f} ({entry['p90']:.2f})"

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{'pattern':24s} {'long found/true':>16s} {'short found/true':>17s} {'centroid mm':>13s} "
             f"{'margin':>6s} {'site named/right':>18s} {'location':>8s} {'count':>5s}"]
    for name, p in report["per_pattern"].items():
        m = p["measurement"]
        lines.append(f"{name:24s} {q(m['long_axis_ratio']):>16s} {q(m['short_axis_ratio']):>17s} "
                     f"{q(m['centroid_error_mm']):>13s} {share(m['margin_agreement']):>6s} "
                     f"{share(m['site_named']) + ' / ' + share(m['site_agreement']):>18s} "
                     f"{share(m['location_class_agreement']):>8s} {share(m['count_exact']):>5s}")
    return lines


def size_lines(report: dict[str, Any]) -> list[str]:
    """The long axis found/true by true length (``long_axis_ratio_by_true_length``): a header, then one line per
    pattern with a lesion found, each range as median (n); ranges that hold none are left out."""
    lines = ["long axis found/true by true long axis: median (lesions found)"]
    for name, p in report["per_pattern"].items():
        ranges = [f"{label} {entry['median']:.2f} ({entry['n']})"
                  for label, entry in p["measurement"]["long_axis_ratio_by_true_length"].items() if entry["n"]]
        if ranges:
            lines.append(f"{name:24s} " + "; ".join(ranges))
    return lines
