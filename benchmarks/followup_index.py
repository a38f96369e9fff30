"""What finding a study's priors costs as a ``calcdx predict`` output folder grows.

    python benchmarks/followup_index.py [--n 1000 10000 25000]

For each N: a folder holding N studies' files (JSON, SR, overlay PNG and Secondary Capture: 4 N empty files)
and a follow-up index of N studies with a HADD deposit, two per patient; then the milliseconds per study that
``finalize_study`` spends on a HADD study's priors (``read_index`` for its patient and ``against_priors``),
the mean of 20 calls once the index is read.  A batch asks once per HADD study, so this must not grow with N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

from calcdx.inference.followup import Deposit, StudyDeposits, against_priors, index_line, own_index_path, read_index


def folder_of(n: int, root: Path) -> Path:
    out = Path(tempfile.mkdtemp(dir=root))
    for i in range(n):
        for suffix in (".json", "_sr.dcm", "_overlay.png", "_overlay.dcm"):
            (out / f"1.2.{i}{suffix}").touch()
    with open(own_index_path(out), "w", encoding="utf-8") as fh:
        for i in range(n):
            date = dt.date(2020, 1, 1) + dt.timedelta(days=i % 700)
            study = StudyDeposits(f"1.2.{i}", f"P{i % max(1, n // 2)}", date, frozenset({("shoulder", "R")}))
            study.deposits[("shoulder", "R", "supraspinatus tendon")] = Deposit(
                study.study_uid, "1.3", 10.0, 5.0, "well_defined", 0.9, "definite")
            fh.write(index_line(study) + "\n")
    return out


def ms_per_study(out: Path, calls: int = 20) -> float:
    current = StudyDeposits("9.9", "P7", dt.date(2023, 1, 1), frozenset({("shoulder", "R")}))
    read_index(out)  # parsed once per process, as in a batch
    start = time.perf_counter()
    for _ in range(calls):
        against_priors(current, [s for s in read_index(out, current.patient_id) if s.study_uid != current.study_uid])
    return 1000.0 * (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 25000])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    try:
        for n in args.n:
            out = folder_of(n, root)
            print(f"{n:7d} studies ({4 * n} files): {ms_per_study(out):7.3f} ms per HADD study to find its priors")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
