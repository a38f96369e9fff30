"""PACS latency: C-STORE of a one-image study to Orthanc -> calcdx SR stored back in Orthanc.

    sudo unshare --net sh -c 'ip link set lo up && .venv/bin/python benchmarks/pacs_latency.py --n 10'

Runs Orthanc (Debian package) and the calcdx node on loopback inside a private network namespace,
sends N one-image studies one after another, and prints p50/p95 of the time from the end of the
C-STORE to the SR appearing in Orthanc (Orthanc's StableAge, 1 s here, is part of it); then sends
the N studies from 4 concurrent storescu processes and prints sustained instances/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from calcdx.inference.pacs.orthanc import LocalOrthanc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def studies(n: int, folder: Path) -> list[tuple[str, Path]]:
    out = []
    sources = sorted(EXAMPLES.glob("*.dcm"))
    for i in range(n):
        ds = pydicom.dcmread(sources[i % len(sources)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"s{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append((str(ds.StudyInstanceUID), path))
    return out


def wait_sr(orthanc: LocalOrthanc, uids: set[str], timeout: float = 600) -> dict[str, float]:
    done: dict[str, float] = {}
    deadline = time.time() + timeout
    while len(done) < len(uids) and time.time() < deadline:
        for uid, study in orthanc.study_modalities().items():
            if uid in uids and uid not in done and "SR" in study["modalities"]:
                done[uid] = time.time()
        time.sleep(0.2)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        with LocalOrthanc(work / "pacs", stable_age=1) as orthanc:
            latencies = []
            for uid, path in studies(args.n, work / "in"):
                orthanc.storescu([path])
                sent = time.time()
                done = wait_sr(orthanc, {uid})
                latencies.append(done[uid] - sent)
            print(f"one-image study -> SR in Orthanc: n={args.n} p50 {np.percentile(latencies, 50):.2f} s, "
                  f"p95 {np.percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s")
            (work / "load").mkdir()
            load = studies(args.n * 2, work / "load")
            start = time.time()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda chunk: orthanc.storescu([p for _, p in chunk]),
                              [load[i::4] for i in range(4)]))
            done = wait_sr(orthanc, {uid for uid, _ in load})
            seconds = max(done.values()) - start
            print(f"4 concurrent senders: {len(done)}/{len(load)} studies with SR, "
                  f"{len(load) / seconds:.2f} instances/s sustained (store to last SR)")


if __name__ == "__main__":
    main()
