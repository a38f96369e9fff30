"""HADD follow-up: simulated prior/follow-up pairs, the comparison, and `calcdx followup` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pydicom
import pytest

from calcdx.datasets.manifest import read_manifest
from calcdx.datasets.reader import read_radiograph, study_date
from calcdx.datasets.simulator import simulate_dataset
from calcdx.inference.followup import (
    CHANGE_MM,
    against_priors,
    append_to_index,
    compare_patients,
    read_index,
    study_deposits,
    study_results,
)
from calcdx.inference.study import safe_name
from calcdx.training.followup_accuracy import pair_truths, score_followup
from tests.tools import dciodvfy_errors, require_tool

CALCDX = str(Path(sys.executable).with_name("calcdx"))
SCHEMA = json.loads(files("calcdx.inference").joinpath("schema/result-v1.json").read_text())


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CALCDX, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shoulder HADD cases with their follow-up studies, through the CLI (model-grid spacing: fast)."""
    out = tmp_path_factory.mktemp("followup") / "sim"
    result = _run("simulate", "--n", "10", "--patterns", "hadd", "--regions", "shoulder", "--seed", "5",
                  "--spacing-mm", "0.4", "--follow-ups", "--workers", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_a_follow_up_is_the_same_patient_later_with_the_deposit_in_the_same_tendon(pairs: Path) -> None:
    rows = read_manifest(pairs / "manifest.csv")
    by_study = {r.study_uid: r for r in rows}
    follow_ups = [r for r in rows if r.path.name.endswith("_fu.dcm")]
    assert follow_ups and len(follow_ups) == sum("hadd" in {p.value for p in r.labels} for r in rows
                                                 if not r.path.name.endswith("_fu.dcm"))
    courses = set()
    for row in follow_ups:
        annotation = json.loads(Path(str(row.annotations)).read_text())
        follow = annotation["follow_up"]
        prior = by_study[follow["prior_study_uid"]]
        courses.add(follow["course"])
        assert row.patient_id == prior.patient_id and row.study_uid != prior.study_uid
        now, then = pydicom.dcmread(row.path), pydicom.dcmread(prior.path)
        assert now.PatientID == then.PatientID and now.PatientSex == then.PatientSex
        assert int(now.StudyDate) > int(then.StudyDate)
        prior_hadd = [les for les in json.loads(Path(str(prior.annotations)).read_text())["lesions"]
                      if les["kind"] == "hadd"]
        hadd = [les for les in annotation["lesions"] if les["kind"] == "hadd"]
        if follow["course"] == "resolved":
            assert not hadd and "hadd" not in {p.value for p in row.labels}
            continue
        assert hadd[0]["site"] == prior_hadd[0]["site"]
        ratio = hadd[0]["size_mm"][0] / prior_hadd[0]["size_mm"][0]
        if follow["course"] == "larger":
            assert ratio > 1.2
        elif follow["course"] == "smaller":
            assert ratio < 0.8
        if follow["course"] == "resorbing":
            assert prior_hadd[0]["variant"] == "formative_resting" and hadd[0]["variant"] == "resorptive"
    assert len(courses) >= 3  # seed 5 gives stable, smaller, resolved and resorbing


def test_follow_ups_do_not_change_the_prior_images(tmp_path: Path) -> None:
    plain = simulate_dataset(tmp_path / "plain", 3, seed=5, patterns=["hadd"], regions=["shoulder"], spacing_mm=0.4)
    with_fu = simulate_dataset(tmp_path / "fu", 3, seed=5, patterns=["hadd"], regions=["shoulder"], spacing_mm=0.4,
                               follow_ups=True)
    for row in read_manifest(plain):
        twin = tmp_path / "fu" / row.path.name
        assert pydicom.dcmread(row.path).PixelData == pydicom.dcmread(twin).PixelData
    assert len(read_manifest(with_fu)) > len(read_manifest(plain))


def test_study_date_falls_back_and_refuses_what_is_not_a_date() -> None:
    ds = pydicom.Dataset()
    ds.StudyDate, ds.SeriesDate = "", "20250302"
    assert study_date(ds) == "2025-03-02"
    ds.StudyDate = "00000000"
    assert study_date(ds) == "2025-03-02"
    ds.SeriesDate = "2025-3-2"
    assert study_date(ds) is None


def _result(study: str, date: str | None, findings: list[dict[str, Any]], *, side: str = "R",
            part: str = "shoulder", patient: str = "P1") -> dict[str, Any]:
    return {"study_instance_uid": study, "patient_id": patient, "study_date": date,
            "images": [{"sop_instance_uid": f"{study}.1", "status": "analyzed", "body_part": part, "laterality": side,
                        "findings": findings}]}


def _hadd(site: str, long_mm: float, margin: str = "well_defined", named: bool = True) -> dict[str, Any]:
    return {"pattern": "hadd", "site": site, "long_axis_mm": long_mm, "short_axis_mm": long_mm / 2, "margin": margin,
            "probability": 0.9, "operating_point": "definite", "site_probability": 0.99 if named else None}


def test_comparison_calls_each_tendon_against_the_latest_prior_of_the_same_side() -> None:
    supra, infra, subscap = "supraspinatus tendon", "infraspinatus tendon", "subscapularis tendon"
    results = [
        _result("1.1", "2024-01-10", [_hadd(supra, 8.0), _hadd(infra, 6.0), _hadd(subscap, 5.0)]),
        _result("1.2", "2024-06-10", [_hadd(supra, 8.0), _hadd(infra, 6.0), _hadd(subscap, 5.0)]),
        # the current study: compared with 1.2 (the latest earlier one), not with 1.1
        _result("1.3", "2024-12-10", [_hadd(supra, 8.0 + CHANGE_MM + 0.5), _hadd(infra, 6.0, "ill_defined"),
                                      _hadd("gluteus medius tendon", 4.0)]),
        _result("1.4", "2024-12-10", [_hadd(supra, 2.0)], side="L"),  # the other shoulder: no prior there
        _result("1.5", None, [_hadd(supra, 20.0)]),  # no date: never compared
    ]
    changes = [c for c in compare_patients(results) if c.current_study_uid == "1.3"]
    by_tendon = {c.tendon: c for c in changes}
    assert {c.prior_study_uid for c in changes} == {"1.2"}
    assert by_tendon[supra].status == "larger" and by_tendon[supra].interval_days == 183
    assert by_tendon[infra].status == "stable" and by_tendon[infra].margin_change == "became ill defined"
    assert "D003_HADD_SYMPTOMATIC" in by_tendon[infra].cite and "more often symptomatic" in by_tendon[infra].text
    assert by_tendon[subscap].status == "not_seen" and by_tendon["gluteus medius tendon"].status == "new"
    assert not [c for c in compare_patients(results) if c.current_study_uid in {"1.4", "1.5"}]
    # a file without laterality is compared with the prior's one side, never with two
    unknown = compare_patients([_result("3.1", "2024-01-01", [_hadd(supra, 6.0)], side="L", patient="P3"),
                                _result("3.2", "2024-03-01", [_hadd(supra, 6.2)], side="", patient="P3")])
    assert [(c.prior_study_uid, c.status) for c in unknown] == [("3.1", "stable")]
    left, right = (_result("4.1", "2024-01-01", [_hadd(supra, mm)], side=side, patient="P4") for side, mm in
                   (("L", 6.0), ("R", 9.0)))
    left["images"] += right["images"]  # one prior study of both shoulders
    both_sides = [left, _result("4.3", "2024-03-01", [_hadd(supra, 6.2)], side="", patient="P4")]
    assert not [c for c in compare_patients(both_sides) if c.current_study_uid == "4.3"]
    # the tendon head named it once and was unsure once (the generic site): still one deposit
    generic = compare_patients([_result("5.1", "2024-01-01", [_hadd(supra, 6.0)], patient="P5"),
                                _result("5.2", "2024-03-01", [_hadd("rotator cuff tendon", 3.0, named=False)],
                                        patient="P5")])
    assert [(c.tendon, c.status) for c in generic] == [(supra, "smaller")]
    small = compare_patients([_result("2.1", "2024-01-01", [_hadd(supra, 3.0)]),
                              _result("2.2", "2024-02-01", [_hadd(supra, 3.0 + CHANGE_MM - 0.2)])])
    assert small[0].status == "stable"  # under the smallest change that is called


def test_predict_writes_the_follow_up_comparison_and_the_cli_prints_it(pairs: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    predicted = _run("predict", str(pairs), "--out", str(results), "--no-sr", "--no-overlay", "--no-progress")
    assert predicted.returncode == 0, predicted.stderr
    study = json.loads(next(p for p in sorted(results.glob("1.*.json"))).read_text())
    assert study["schema_version"] == "1.2" and study["patient_id"].startswith("SIM0005-")
    assert study["study_date"] and study["images"][0]["body_part"] == "shoulder"
    assert study["images"][0]["laterality"] in {"L", "R"}
    with open(results / "followup.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["status"] for r in rows} <= {"larger", "smaller", "stable", "new", "not_seen"}
    assert all(r["patient_id"].startswith("SIM0005-") and r["current_date"] > r["prior_date"] for r in rows)
    cited = json.loads((results / "followup.json").read_text())["citations"]
    assert cited["D003_HADD_REPORT"]["document"] == "003_4d307f20d16940dc"
    report = score_followup(pair_truths(read_manifest(pairs / "manifest.csv")),
                            compare_patients(study_results([results])))
    assert report["pairs"] == sum(1 for p in pairs.glob("*_fu.dcm"))
    # every pair is accounted for under its true course (how often rightly: benchmarks/followup_accuracy.py)
    assert sum(entry["pairs"] for entry in report["per_course"].values()) == report["pairs"]
    assert set(report["per_course"]) <= {"stable", "larger", "smaller", "resolved", "resorbing"}
    out = tmp_path / "cmp"
    printed = _run("followup", str(results), "--out", str(out))
    assert printed.returncode == 0, printed.stderr
    assert "HADD," in printed.stdout and (out / "followup.json").is_file()
    empty = _run("followup", str(tmp_path))
    assert empty.returncode == 0 and "nothing to compare" in empty.stdout
    missing = _run("followup", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "nowhere" in missing.stderr


def test_reader_gives_the_study_date(pairs: Path) -> None:
    path = next(pairs.glob("*_fu.dcm"))
    ds = pydicom.dcmread(path)
    assert read_radiograph(path).study_date == f"{ds.StudyDate[:4]}-{ds.StudyDate[4:6]}-{ds.StudyDate[6:]}"


def test_a_study_written_after_its_prior_carries_the_comparison_in_json_and_sr(pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    priors = [p for p in sorted(pairs.glob("img*.dcm")) if not p.name.endswith("_fu.dcm")]
    follow_ups = sorted(pairs.glob("*_fu.dcm"))
    for batch in (priors, follow_ups):  # the prior visit's run, then the follow-up's, into one folder
        result = _run("predict", *map(str, batch), "--out", str(out), "--no-overlay", "--no-progress")
        assert result.returncode == 0, result.stderr
    assert list(out.glob("followup-index-rank0.jsonl"))
    compared = 0
    for path in out.glob("1.*.json"):
        data = json.loads(path.read_text())
        jsonschema.validate(data, SCHEMA)
        if not data.get("followup"):
            continue
        compared += 1
        assert all(c["prior_date"] < c["current_date"] == data["study_date"] for c in data["followup"])
        assert "Follow-up of HADD against the latest prior study" in data["summary"]
        dump = subprocess.run([require_tool("dsrdump"), "+Pl", str(out / data["outputs"]["sr"])], capture_output=True,
                              text=True, encoding="latin-1")  # the SR's character set is ISO_IR 100
        assert dump.returncode == 0 and "Follow-up of HADD" in dump.stdout
        assert dciodvfy_errors(out / data["outputs"]["sr"]) == []
    assert compared, "no follow-up study was compared with its prior"


def test_the_index_is_read_incrementally_and_survives_a_torn_line(tmp_path: Path) -> None:
    first = study_deposits(_result("6.1", "2024-01-01", [_hadd("supraspinatus tendon", 6.0)], patient="P6"))
    second = study_deposits(_result("6.2", "2024-05-01", [_hadd("supraspinatus tendon", 9.0)], patient="P6"))
    assert first is not None and second is not None
    append_to_index(tmp_path, first)
    assert [s.study_uid for s in read_index(tmp_path)] == ["6.1"]
    index = next(tmp_path.glob("followup-index-rank*.jsonl"))
    with open(index, "a", encoding="utf-8") as fh:
        fh.write('{"study_uid": "6.9", "patien')  # a line a killed run left unfinished
    assert [s.study_uid for s in read_index(tmp_path)] == ["6.1"]
    append_to_index(tmp_path, second)  # on a line of its own
    studies = {s.study_uid: s for s in read_index(tmp_path)}
    assert sorted(studies) == ["6.1", "6.2"]
    assert against_priors(studies["6.2"], studies.values())[0].status == "larger"


def test_the_index_gives_one_patients_studies_and_lists_the_folder_seldom(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch asks for a study's priors once per study: the answer is that patient's studies alone (a
    study whose line is replaced under another patient moves with it), and the folder is listed again only
    after ``INDEX_LIST_SECONDS``; this rank's own file is read every time."""
    from calcdx.inference import followup

    def study(uid: str, patient: str, date: str, mm: float = 6.0) -> Any:
        deposits = study_deposits(_result(uid, date, [_hadd("supraspinatus tendon", mm)], patient=patient))
        assert deposits is not None
        return deposits

    monkeypatch.setattr(followup, "INDEX_LIST_SECONDS", 1e9)  # the first list holds for the whole test ...
    for uid, patient, date in (("7.1", "P7", "2024-01-01"), ("8.1", "P8", "2024-01-02"), ("7.2", "P7", "2024-03-01")):
        append_to_index(tmp_path, study(uid, patient, date))
    assert sorted(s.study_uid for s in read_index(tmp_path, "P7")) == ["7.1", "7.2"]
    assert [s.study_uid for s in read_index(tmp_path, "P8")] == ["8.1"]
    assert read_index(tmp_path, "P9") == []
    append_to_index(tmp_path, study("7.1", "P8", "2024-01-01"))  # the line of 7.1 replaced: another patient now
    assert [s.study_uid for s in read_index(tmp_path, "P7")] == ["7.2"]
    assert sorted(s.study_uid for s in read_index(tmp_path, "P8")) == ["7.1", "8.1"]
    everyone = {s.study_uid: s.patient_id for s in read_index(tmp_path)}
    assert everyone == {"7.1": "P8", "7.2": "P7", "8.1": "P8"}
    # another rank's file, written after the folder was listed, is read once the list is old enough
    other = tmp_path / "followup-index-rank1.jsonl"
    other.write_text(followup.index_line(study("9.1", "P9", "2024-02-01")) + "\n", encoding="utf-8")
    assert read_index(tmp_path, "P9") == []
    monkeypatch.setattr(followup, "INDEX_LIST_SECONDS", -1.0)  # ... until it is old enough
    assert [s.study_uid for s in read_index(tmp_path, "P9")] == ["9.1"]
    other.unlink()  # a file gone since the folder was listed is skipped
    assert sorted(s.study_uid for s in read_index(tmp_path, "P7")) == ["7.2"]


def test_a_batch_takes_each_patient_oldest_first_and_keeps_a_patient_on_one_rank() -> None:
    from calcdx.datasets.discovery import Study
    from calcdx.inference.batch import shard_studies

    studies = [Study(uid, patient_id=patient, study_date=date) for uid, patient, date in (
        ("a2", "A", "2024-06-01"), ("b1", "B", "2023-01-01"), ("a1", "A", "2024-01-01"), ("x", None, None),
        ("b2", "B", "2023-02-01"), ("c1", "C", "2022-01-01"))]
    assert [s.study_uid for s in shard_studies(studies, 0, 1)] == ["x", "c1", "b1", "b2", "a1", "a2"]
    ranks = [shard_studies(studies, rank, 3) for rank in range(3)]
    assert sorted(s.study_uid for rank in ranks for s in rank) == sorted(s.study_uid for s in studies)
    for patient in "ABC":
        assert sum(any(s.patient_id == patient for s in rank) for rank in ranks) == 1
    for rank in ranks:
        dates = [s.study_date or "" for s in rank]
        assert dates == sorted(dates)


def test_a_follow_up_listed_before_its_prior_still_carries_the_comparison(pairs: Path, tmp_path: Path) -> None:
    """One run over both visits, the follow-ups named first: the batch writes each prior first, so every
    comparison in ``followup.json`` is also in the follow-up's own JSON and SR."""
    out = tmp_path / "results"
    follow_ups = sorted(pairs.glob("*_fu.dcm"))
    priors = [p for p in sorted(pairs.glob("img*.dcm")) if not p.name.endswith("_fu.dcm")]
    result = _run("predict", *map(str, follow_ups + priors), "--out", str(out), "--no-overlay", "--no-progress")
    assert result.returncode == 0, result.stderr
    merged = json.loads((out / "followup.json").read_text())["comparisons"]
    assert merged
    by_study: dict[str, int] = {}
    for change in merged:
        by_study[change["current_study_uid"]] = by_study.get(change["current_study_uid"], 0) + 1
    for study_uid, n in by_study.items():
        data = json.loads((out / f"{safe_name(study_uid)}.json").read_text())
        assert len(data["followup"]) == n, study_uid
        dump = subprocess.run([require_tool("dsrdump"), "+Pl", str(out / data["outputs"]["sr"])], capture_output=True,
                              text=True, encoding="latin-1")
        assert "Follow-up of HADD" in dump.stdout
