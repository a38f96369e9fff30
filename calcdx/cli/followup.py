"""``calcdx followup RESULTS... [--out DIR]``: each HADD deposit against the same patient's prior study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "followup", help="compare each HADD deposit with the same patient's prior study, tendon by tendon",
        description="Reads the study results of one or more 'calcdx predict' output folders, groups them by "
                    "Patient ID, orders them by study date and compares every study with the patient's latest "
                    "earlier study of the same body part and side: per tendon, the deposit's long and short axis "
                    "and margin then and now, called larger, smaller, stable, new or not seen. Writes "
                    "DIR/followup.json (with the seed's citations) and DIR/followup.csv, and prints one line per "
                    "deposit. 'calcdx predict' writes the same files into its output folder whenever that folder "
                    "holds a patient's prior study.",
        epilog="example:\n  calcdx predict prior_study/ --out results/\n  calcdx predict current_study/ --out results/"
               "\n  calcdx followup results/            (or: calcdx followup last_year/ this_year/ --out cmp/)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="output folder(s) of 'calcdx predict'")
    parser.add_argument("--out", help="output folder (default: the first results folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.errors import ConfigError
    from calcdx.inference.followup import compare_patients, study_results, write_followup

    folders = [Path(f) for f in args.results]
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f'results folder "{folder}" does not exist (run "calcdx predict ... --out {folder}")')
    results = list(study_results(folders))
    changes = compare_patients(results)
    dated = sum(bool(r.get("patient_id") and r.get("study_date")) for r in results)
    if not changes:
        print(f"{len(results)} study results ({dated} with a patient ID and a date): no patient has an earlier "
              "study of the same body part and side, so there is nothing to compare (results written before "
              "calcdx 0.1's schema 1.1 carry no patient ID or date: re-run 'calcdx predict' on them)")
        return 0
    json_path, csv_path = write_followup(changes, args.out or folders[0])
    for change in changes:
        print(f"{change.patient_id} {change.current_date}: {change.text}")
    print(f"{len(changes)} deposit comparison(s) over {len(results)} study results; wrote {json_path} and {csv_path}")
    return 0
