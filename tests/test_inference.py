"""Batch inference end to end: real DICOM in, JSON/CSV/SR/overlays out, checked with real tools."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import highdicom as hd
import jsonschema
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from calcdx.cli.main import main
from calcdx.datasets.radiograph import Radiograph, SpacingSource
from calcdx.findings import Finding, Margin
from calcdx.inference import Predictor
from calcdx.inference.findings import measure
from calcdx.inference.overlay import finding_label
from calcdx.inference.sr import build_sr, referenced_uids, site_concept
from calcdx.taxonomy import PATTERN_CODES, LocationClass, Pattern
from tests.reader_fixtures import sample_file
from tests.tools import dciodvfy_errors, require_tool

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CALCDX = str(Path(sys.executable).with_name("calcdx"))
SCHEMA = json.loads(files("calcdx.inference").joinpath("schema/result-v1.json").read_text())


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three example studies plus bad inputs, predicted once through the real CLI."""
    src = tmp_path_factory.mktemp("in")
    for name in ("img000004.dcm", "img000010.dcm", "img000012.dcm"):
        shutil.copy(EXAMPLES / name, src / name)
    shutil.copy(sample_file("CT_small.dcm"), src / "ct.dcm")
    data = (EXAMPLES / "img000002.dcm").read_bytes()
    (src / "truncated.dcm").write_bytes(data[: len(data) // 3])
    (src / "notes.bin").write_bytes(b"not a dicom file at all")
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run(
        [CALCDX, "predict", str(src), "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1, result.stderr  # some files failed: the exit code says so
    return out


def test_bad_files_are_listed_and_do_not_stop_the_batch(batch: Path) -> None:
    rows = list(csv.DictReader((batch / "failures.csv").open()))
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["ct.dcm"]["code"] == "E_NOT_RADIOGRAPH" and "modality CT" in by_name["ct.dcm"]["reason"]
    assert by_name["truncated.dcm"]["code"] in {"E_TRUNCATED", "E_CORRUPT", "E_NOT_DICOM"}
    assert by_name["notes.bin"]["code"] == "E_NOT_DICOM"
    studies = [p for p in batch.glob("*.json")]
    assert len(studies) >= 3


def test_an_output_folder_that_is_a_file_is_a_clear_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "results"
    taken.write_text("a file, not a folder")
    assert main(["predict", str(EXAMPLES / "img000004.dcm"), "--out", str(taken), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"the output folder {taken} is a file" in err and "Traceback" not in err
    # any command: what the file system refuses is named with its path (here the simulator's folder)
    assert main(["simulate", "--n", "1", "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"calcdx simulate: error: File exists: {taken}"


def test_study_json_follows_the_shipped_schema(batch: Path) -> None:
    for path in batch.glob("*.json"):
        data = json.loads(path.read_text())
        jsonschema.validate(data, SCHEMA)
        assert len(data["model"]["weights_sha256"]) == 64
        for image in data["images"]:
            assert image["spacing_source"] in {s.value for s in SpacingSource}
            for finding in image["findings"]:
                assert finding["differential"]["ranking"][0]["citation"]["document"]


def test_summary_csv_has_one_row_per_finding_or_image(batch: Path) -> None:
    rows = list(csv.DictReader((batch / "summary.csv").open()))
    images = sum(len(json.loads(p.read_text())["images"]) for p in batch.glob("*.json"))
    assert len({r["sop_instance_uid"] for r in rows}) == images


def test_sr_is_valid_reads_back_and_references_the_sources(batch: Path) -> None:
    srs = sorted(batch.glob("*_sr.dcm"))
    assert srs
    for path in srs:
        assert dciodvfy_errors(path) == []
        dump = subprocess.run([require_tool("dsrdump"), str(path)], capture_output=True, text=True)
        assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout
        sr = hd.sr.srread(path)
        study = json.loads(
            next(
                p
                for p in batch.glob("*.json")
                if json.loads(p.read_text())["study_instance_uid"] == sr.StudyInstanceUID
            ).read_text()
        )
        assert {i["sop_instance_uid"] for i in study["images"]} <= {str(u) for u in referenced_uids(sr)}
        groups = sr.content.get_planar_roi_measurement_groups()
        n_findings = sum(len(i["findings"]) for i in study["images"])
        assert len(groups) == n_findings


def test_each_finding_shows_what_its_size_was_measured_on_in_json_sr_and_overlay(batch: Path) -> None:
    """The outline and long axis a finding's size was measured on: in its box, as long as its long axis in
    the JSON, as its SR region, and drawn on the overlay (which differs from one drawn without them just there)."""
    from calcdx.datasets.reader import read_radiograph
    from calcdx.inference.overlay import render_overlay

    measured = 0
    for path in batch.glob("1.*.json"):
        study = json.loads(path.read_text())
        if not study["outputs"].get("sr"):  # the refused CT's study
            continue
        regions = [np.asarray(g.roi.value, float) for g in
                   hd.sr.srread(batch / study["outputs"]["sr"]).content.get_planar_roi_measurement_groups()]
        k = 0
        for image in study["images"]:
            for f in image["findings"]:
                outline, ends = np.asarray(f["outline_px"], float), np.asarray(f["long_axis_px"], float)
                assert len(outline) >= 3, f
                r0, c0, r1, c1 = f["bbox_px"]
                assert (outline.min(0) >= (r0 - 1, c0 - 1)).all() and (outline.max(0) <= (r1, c1)).all(), f
                length = np.hypot(*((ends[1] - ends[0]) * f["pixel_spacing_mm"]))
                assert length == pytest.approx(f["long_axis_mm"], rel=0.02, abs=0.05), f
                region = regions[k]  # (column, row) of the pixel's top left corner, closed
                assert np.allclose(region[:-1], outline[:, ::-1] + 0.5) and np.allclose(region[0], region[-1])
                k += 1
                measured += 1
        source = EXAMPLES / Path(next(i["source"] for i in study["images"])).name
        radiograph = read_radiograph(source)
        findings = [Finding.from_dict(f) for f in study["images"][0]["findings"]]
        drawn = np.asarray(render_overlay(radiograph, findings), np.int16)
        bare = np.asarray(render_overlay(radiograph, [replace(f, outline_px=(), long_axis_px=None) for f in findings]),
                          np.int16)
        changed = np.argwhere(np.abs(drawn - bare).sum(-1) > 0)
        if findings:
            scale = drawn.shape[1] / radiograph.shape[1]
            points = np.concatenate([np.asarray((*f.outline_px, *f.long_axis_px)) for f in findings]) * scale
            assert len(changed)
            nearest = np.min(np.hypot(*(changed[:, None, :] - points[None, :, :]).transpose(2, 0, 1)), axis=1)
            assert np.percentile(nearest, 99) < 0.1 * max(drawn.shape)  # drawn where the findings are
        else:
            assert not len(changed)
    assert measured >= 5


def test_overlays_exist_as_png_and_valid_secondary_capture(batch: Path) -> None:
    pngs = sorted(batch.glob("*_overlay.png"))
    scs = sorted(batch.glob("*_overlay.dcm"))
    assert pngs and len(pngs) == len(scs)
    for path in scs:
        assert dciodvfy_errors(path) == []
        ds = pydicom.dcmread(path)
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID


def _finding(pattern: Pattern, box: tuple[int, int, int, int], site: str | None = None) -> Finding:
    return Finding(
        site=site,
        pattern=pattern,
        probability=0.91,
        bbox_px=box,
        centroid_px=((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
        long_axis_mm=9.5,
        short_axis_mm=4.0,
        area_mm2=30.0,
        margin=Margin.WELL_DEFINED,
        location_class=LocationClass.TENDON,
        pixel_spacing_mm=(0.2, 0.2),
    )


def test_overlay_label_names_the_tendon_and_margin_the_heads_gave() -> None:
    plain = _finding(Pattern.TUMORAL_CALCINOSIS, (300, 300, 400, 420), site="periarticular")
    assert finding_label(2, plain).startswith("2. ") and finding_label(2, plain).endswith("10x4 mm")
    hadd = replace(_finding(Pattern.HADD, (100, 120, 140, 170), site="supraspinatus tendon"),
                   site_probability=0.99, margin_probability=0.1)
    assert finding_label(1, hadd).endswith("10x4 mm, supraspinatus tendon, well defined")


def test_sr_has_one_group_per_finding_with_codes_and_measurements(tmp_path: Path) -> None:
    source = pydicom.dcmread(EXAMPLES / "img000011.dcm", stop_before_pixels=True)
    findings = [
        _finding(Pattern.HADD, (100, 120, 140, 170), site="supraspinatus tendon"),
        _finding(Pattern.TUMORAL_CALCINOSIS, (300, 300, 400, 420)),
    ]
    identity = {"name": "test", "version": "1", "weights_sha256": "0" * 64}
    sr = build_sr(
        [source],
        {source.SOPInstanceUID: findings},
        {source.SOPInstanceUID: ["diff 1", "diff 2"]},
        model_identity=identity,
        study_summary="summary",
        image_probabilities={source.SOPInstanceUID: {"hadd": 0.91, "tumoral_calcinosis": 0.8}},
    )
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    back = hd.sr.srread(path)
    groups = back.content.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    codes = {g.finding_type.value for g in groups}
    assert codes == {PATTERN_CODES[Pattern.HADD].value, PATTERN_CODES[Pattern.TUMORAL_CALCINOSIS].value}
    names = {m.name.meaning: m.value for m in groups[0].get_measurements()}
    assert names["Long Axis"] == pytest.approx(9.5) and names["Calibrated probability"] == pytest.approx(0.91)
    assert groups[0].roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    by_type = {g.finding_type.value: g for g in groups}
    hadd_sites = by_type[PATTERN_CODES[Pattern.HADD].value].finding_sites
    assert [site.value.meaning for site in hadd_sites] == ["supraspinatus tendon"]
    assert hadd_sites[0].value == site_concept("Supraspinatus tendon ")  # one code per site name
    assert by_type[PATTERN_CODES[Pattern.TUMORAL_CALCINOSIS].value].finding_sites == []
    assert back.StudyInstanceUID == source.StudyInstanceUID and back.PatientID == source.PatientID


def test_sr_skips_highdicoms_copy_of_its_content_and_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """``build_sr`` hands highdicom a content tree that deep-copies as itself (the copy was a third of an SR's
    time); the SR is the one highdicom makes with its own copy, element for element (UIDs made alike, the
    creation times aside)."""
    import itertools

    import calcdx.inference.sr as sr_module

    source = pydicom.dcmread(EXAMPLES / "img000011.dcm", stop_before_pixels=True)
    findings = [_finding(Pattern.HADD, (100, 120, 140, 170), site="supraspinatus tendon"),
                _finding(Pattern.TUMORAL_CALCINOSIS, (300, 300, 400, 420))]

    def built() -> Dataset:
        counter = itertools.count(1)
        monkeypatch.setattr(hd, "UID", lambda: pydicom.uid.UID(f"1.2.3.{next(counter)}"))
        sr = build_sr([source], {source.SOPInstanceUID: findings}, {source.SOPInstanceUID: ["diff 1", "diff 2"]},
                      model_identity={"name": "test", "version": "1", "weights_sha256": "0" * 64},
                      study_summary="summary", sop_instance_uid="1.2.9.1", series_instance_uid="1.2.9.2")
        for keyword in ("ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
                        "ContributingEquipmentSequence"):
            if keyword in sr:
                delattr(sr, keyword)
        return sr

    handed_over = built()
    monkeypatch.setattr(sr_module, "_handed_over", lambda content: content)  # highdicom copies
    assert handed_over == built()


def test_sr_says_not_analysed_with_the_reason_for_a_declined_image(tmp_path: Path) -> None:
    analysed = pydicom.dcmread(EXAMPLES / "img000011.dcm", stop_before_pixels=True)
    declined = pydicom.dcmread(EXAMPLES / "img000010.dcm", stop_before_pixels=True)
    declined.StudyInstanceUID = analysed.StudyInstanceUID
    sr = build_sr([analysed, declined], {analysed.SOPInstanceUID: [], declined.SOPInstanceUID: []}, {},
                  model_identity={"name": "test", "version": "1", "weights_sha256": "0" * 64}, study_summary="",
                  image_probabilities={analysed.SOPInstanceUID: {"hadd": 0.1}, declined.SOPInstanceUID: {"hadd": 0.4}},
                  not_analysed={declined.SOPInstanceUID: "out of distribution: feature distance 17.8"})
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    back = hd.sr.srread(path)
    assert {str(u) for u in referenced_uids(back)} == {analysed.SOPInstanceUID, declined.SOPInstanceUID}
    by_image = {str(g.source_images[0].referenced_sop_instance_uid): g
                for g in back.content.get_image_measurement_groups()}
    verdicts = {uid: g.get_qualitative_evaluations()[0].value.meaning for uid, g in by_image.items()}
    assert verdicts[declined.SOPInstanceUID].startswith("Not analysed")
    assert verdicts[analysed.SOPInstanceUID].startswith("Not found")
    assert by_image[declined.SOPInstanceUID].get_measurements() == []  # no probability for a declined image
    comments = [item.TextValue for item in by_image[declined.SOPInstanceUID][0].ContentSequence
                if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert comments == ["out of distribution: feature distance 17.8"]


def test_decoding_workers_leave_the_model_the_other_cores() -> None:
    from calcdx.inference.batch import model_threads

    cores = len(os.sched_getaffinity(0))
    assert model_threads(0, 7) == 7
    assert model_threads(1, 7) == max(1, cores - 1)
    assert model_threads(cores + 4, 7) == 1


def test_device_auto_falls_back_to_the_cpu_and_a_missing_gpu_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from calcdx.devices import resolve_device
    from calcdx.errors import ConfigError
    from calcdx.inference.batch import default_workers

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the fallback and the error cannot be shown here")
    assert resolve_device("auto") == torch.device("cpu")
    assert Predictor(device="auto").device == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert main(["predict", str(EXAMPLES), "--out", str(tmp_path), "--device", "cuda", "--no-progress"]) == 2
    assert "'cuda' asked for but CUDA is not available" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
    cores = len(os.sched_getaffinity(0))
    assert default_workers("cpu") == min(2, cores)
    assert default_workers("cuda:0") == max(1, cores - 1)


@pytest.mark.parametrize("scale", [1, 8])  # 10 x 20 mm, and an 80 x 160 mm sheet (a broad background blur)
def test_measurement_of_a_known_ellipse(scale: int) -> None:
    spacing = (0.2, 0.2)
    n = 200 * scale
    yy, xx = np.mgrid[:n, :n]
    image = np.full((n, n), 0.3, np.float32)
    inside = ((yy - n / 2) / (25.0 * scale)) ** 2 + ((xx - n / 2) / (50.0 * scale)) ** 2 <= 1
    image[inside] = 0.8
    m = measure(image, (70 * scale, 45 * scale, 130 * scale, 155 * scale), spacing)
    assert m.long_mm == pytest.approx(20.0 * scale, rel=0.05)
    assert m.short_mm == pytest.approx(10.0 * scale, rel=0.05)
    assert m.margin is Margin.WELL_DEFINED and m.count == 1
    assert m.density > 0.3
    # the outline is the ellipse's border and the long axis runs along its major (column) axis
    rows, cols = m.outline_px[:, 0] - n / 2, m.outline_px[:, 1] - n / 2
    assert np.abs(np.hypot(rows / (25.0 * scale), cols / (50.0 * scale)) - 1).max() < 0.1
    (a_row, a_col), (b_row, b_col) = m.long_axis_px
    assert abs(a_row - b_row) < 1 and abs(a_col - b_col) * spacing[1] == pytest.approx(m.long_mm, rel=0.01)


def test_measurement_keeps_the_deposit_not_a_bone_edge_the_box_crosses() -> None:
    """A 4 x 8 mm oval in the box's centre and a bright band (a cortex) through the box's corner: the band
    stands out of the local background too, but the box's edge cuts it, so size and count are the oval's."""
    spacing = (0.1, 0.1)
    yy, xx = np.mgrid[:300, :300]
    image = np.full((300, 300), 0.3, np.float32)
    image[((yy - 150) / 20.0) ** 2 + ((xx - 150) / 40.0) ** 2 <= 1] = 0.8
    image[(yy + xx > 420) & (yy + xx < 440)] = 0.9  # a band through the lower right corner of the box
    m = measure(image, (90, 70, 220, 230), spacing)
    assert m.count == 1
    assert m.long_mm == pytest.approx(8.0, rel=0.05) and m.short_mm == pytest.approx(4.0, rel=0.05)
    assert m.centroid_px == pytest.approx((150.0, 150.0), abs=1.0)
    assert m.margin is Margin.WELL_DEFINED


def test_a_chest_radiograph_is_not_silently_labelled() -> None:
    predictor = Predictor()
    if not predictor.card.ood:
        pytest.fail("the shipped model card must carry out-of-distribution statistics")
    from calcdx.datasets.reader import read_radiograph

    chest: Radiograph = read_radiograph(sample_file("RG1_UNCR.dcm"))
    result = predictor.analyze(chest)
    assert result.status == "not_analyzed" and "out of distribution" in result.reason


def test_an_image_just_outside_the_training_data_is_analysed_and_flagged_low_confidence(tmp_path: Path) -> None:
    """Between the OOD threshold and the refusal threshold: findings kept, flagged in JSON, CSV and SR."""
    from calcdx.inference import run_batch

    predictor = Predictor()
    distance = predictor.analyze(_example("img000010.dcm")).ood_distance
    for threshold, expected in ((distance * 0.8, "analyzed"), (distance * 0.4, "not_analyzed")):
        predictor.card = predictor.card.with_updates(ood={**predictor.card.ood, "threshold": threshold})
        predictor.card.ood.pop("refuse_threshold", None)  # the default: twice the threshold
        out = tmp_path / expected
        report = run_batch([EXAMPLES / "img000010.dcm"], out, predictor, progress=False)
        study = json.loads(next(out.glob("*.json")).read_text())
        image = study["images"][0]
        assert image["status"] == expected
        if expected == "analyzed":
            assert image["low_confidence"] and image["reason"].startswith("low confidence")
            assert image["findings"] and report.n_low_confidence == 1 and report.n_not_analyzed == 0
            assert "1 of 1 image(s) analysed with low confidence" in study["summary"]
            assert "low confidence" in next(csv.DictReader((out / "summary.csv").open()))["reason"]
            sr = pydicom.dcmread(next(out.glob("*_sr.dcm")))
            assert any("low confidence" in str(getattr(item, "TextValue", "")) for item in _walk(sr))
        else:
            assert not image["low_confidence"] and "refusal threshold" in image["reason"]
            assert not image["findings"] and report.n_not_analyzed == 1
            assert study["summary"].endswith("1 of 1 image(s) not analysed: unlike the model's training data.")


def _example(name: str) -> Radiograph:
    from calcdx.datasets.reader import read_radiograph

    return read_radiograph(EXAMPLES / name)


def _walk(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    items = []
    for item in getattr(ds, "ContentSequence", []):
        items += [item, *_walk(item)]
    return items


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    names = sorted(p.name for p in EXAMPLES.glob("*.dcm"))[:6]
    for name in names:
        shutil.copy(EXAMPLES / name, src / name)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [CALCDX, "predict", str(src), "--out", str(out), "--no-progress", "--no-overlay"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert 1 <= len(done_before) < 6
    result = subprocess.run(
        [CALCDX, "predict", str(src), "--out", str(out), "--no-progress", "--no-overlay"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stderr
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in done_before.items())  # finished studies not redone
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len({r["sop_instance_uid"] for r in rows}) == 6
    assert not list(out.glob(".*.tmp"))


def test_a_results_folder_inside_the_input_folder_is_not_read_back_as_input(tmp_path: Path) -> None:
    """``calcdx predict study/ --out study/results``, run again after a study's JSON is gone: the study is
    redone with its own SR and overlays beside its image, and they are passed over, not failed files."""
    src = tmp_path / "study"
    src.mkdir()
    for name in ("img000004.dcm", "img000010.dcm"):
        shutil.copy(EXAMPLES / name, src / name)
    out = src / "results"
    command = [CALCDX, "predict", str(src), "--out", str(out), "--no-progress"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    written = sorted(out.glob("*.dcm"))
    assert any(p.name.endswith("_sr.dcm") for p in written) and any("_overlay" in p.name for p in written)
    redo = sorted(out.glob("*.json"))[0]
    redo.unlink()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 studies analysed (1 already done)" in again.stderr and ", 0 failed files" in again.stderr
    assert f"passed over {len(written)} SR and overlay file(s) that calcdx wrote" in again.stderr
    assert list(csv.DictReader((out / "failures.csv").open())) == []
    result = json.loads(redo.read_text())
    assert result["refused"] == [] and [Path(im["source"]).parent for im in result["images"]] == [src]


def test_a_copy_of_an_image_in_another_folder_is_analysed_once(tmp_path: Path) -> None:
    """Before, both copies were analysed: the study's JSON listed the image twice and summary.csv, the SR and
    the differential counted its findings twice."""
    src = tmp_path / "in"
    (src / "export").mkdir(parents=True)
    shutil.copy(EXAMPLES / "img000004.dcm", src / "img000004.dcm")
    shutil.copy(EXAMPLES / "img000004.dcm", src / "export" / "IM0001")
    out = tmp_path / "out"
    result = subprocess.run([CALCDX, "predict", str(src), "--out", str(out), "--no-progress", "--no-sr",
                             "--no-overlay"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "passed over 1 further copy of instances found before" in result.stderr
    (study,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(study["images"]) == 1 and study["images"][0]["findings"]
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == len(study["images"][0]["findings"])


def test_a_file_whose_decoding_process_dies_fails_alone_and_the_batch_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that crashes on a file (SIGSEGV) or the system killing the process for memory (SIGKILL)
    ended the whole batch: torch's DataLoader raises when a worker process dies.  Now the files the dead
    process may have held are read again one by one, each in a process of its own: the file that kills it
    again fails with the signal in its reason, every other file is analysed.  The workers are forked from
    this process, so they read through the patched reader and really die."""
    import calcdx.inference.batch as batch_module

    src = tmp_path / "in"
    src.mkdir()
    names = sorted(p.name for p in EXAMPLES.glob("*.dcm"))[:8]
    for name in names:
        shutil.copy(EXAMPLES / name, src / name)
    fatal = {names[2]: signal.SIGSEGV, names[6]: signal.SIGKILL}
    real_read = batch_module.read_radiographs

    def read(path: str | Path, **kwargs: object) -> list[Radiograph]:
        if Path(path).name in fatal:
            os.kill(os.getpid(), fatal[Path(path).name])
        return real_read(path, **kwargs)

    monkeypatch.setattr(batch_module, "read_radiographs", read)
    report = batch_module.run_batch([src], tmp_path / "out", Predictor(), workers=2, write_sr=False,
                                    write_overlays=False, progress=False)
    assert report.n_images == len(names) - 2 and report.n_studies == len(names)
    by_name = {Path(f["path"]).name: f for f in report.failures}
    assert set(by_name) == set(fatal)
    assert by_name[names[2]]["code"] == "E_CORRUPT" and "SIGSEGV" in by_name[names[2]]["reason"]
    assert by_name[names[6]]["code"] == "E_TOO_LARGE" and "SIGKILL" in by_name[names[6]]["reason"]
    rows = list(csv.DictReader((tmp_path / "out" / "failures.csv").open()))
    assert sorted(Path(r["path"]).name for r in rows) == sorted(fatal)
    analysed = {Path(im["source"]).name for p in (tmp_path / "out").glob("*.json")
                for im in json.loads(p.read_text())["images"]}
    assert analysed == set(names) - set(fatal)


def _read_or_crash(path: str | Path, **kwargs: Any) -> list[Radiograph]:
    """The reader, except that a file named ``crash-*`` makes the process that reads it die (SIGSEGV)."""
    from calcdx.datasets.reader import read_radiographs

    if Path(path).name.startswith("crash-"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return read_radiographs(path, **kwargs)


def test_the_pacs_front_ends_survive_a_file_that_crashes_its_decoder(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``analyze_study`` (the DICOM node's and the DICOMweb service's analysis) decodes in a forked process:
    one that dies on a file refuses that file, the next file gets a new process, and the server process
    (here: pytest) lives on.  Before, the decoder's crash ended the server, and on restart the same study
    crashed it again."""
    import calcdx.inference.study as study_module
    from calcdx.inference import analyze_study

    crash = tmp_path / "crash-me.dcm"
    shutil.copy(EXAMPLES / "img000004.dcm", crash)
    files = [EXAMPLES / "img000010.dcm", crash, EXAMPLES / "img000011.dcm"]
    monkeypatch.setattr(study_module, "read_radiographs", _read_or_crash)  # a module-level function: picklable
    result = analyze_study(files, Predictor(), tmp_path / "out", write_sr=False, write_overlays=False)
    assert [im["source"] for im in result.result["images"]] == [str(files[0]), str(files[2])]
    (refused,) = result.failures
    assert refused["code"] == "E_CORRUPT" and "SIGSEGV" in refused["reason"] and refused["path"] == str(crash)


@pytest.mark.slow
def test_rank_sharded_run_merges_to_the_single_process_result(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in sorted(p.name for p in EXAMPLES.glob("*.dcm"))[:4]:
        shutil.copy(EXAMPLES / name, src / name)
    single = tmp_path / "single"
    assert main(["predict", str(src), "--out", str(single), "--no-progress", "--no-overlay", "--no-sr"]) == 0
    sharded = tmp_path / "sharded"
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [CALCDX, "predict", str(src), "--out", str(sharded), "--no-progress", "--no-overlay", "--no-sr"],
            env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
        )
        for r in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]

    def rows(folder: Path) -> set[tuple[str, str, str]]:
        return {
            (r["sop_instance_uid"], r["pattern"], r["probability"])
            for r in csv.DictReader((folder / "summary.csv").open())
        }

    assert rows(sharded) == rows(single)
    assert (sharded / "failures-rank0.csv").exists() and (sharded / "failures-rank1.csv").exists()


@pytest.mark.parametrize("stage", ["forward", "forward in a worker", "finish"])
def test_a_study_that_fails_after_decoding_is_listed_and_the_batch_goes_on(
        stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the model (main thread, or a decoding worker on the CPU) or in findings/files (helper
    thread) costs one study only."""
    from calcdx.datasets.reader import read_radiograph
    from calcdx.inference import batch as batch_module
    from calcdx.inference import run_batch

    names = ("img000004.dcm", "img000010.dcm", "img000012.dcm")
    headers = [pydicom.dcmread(EXAMPLES / n, stop_before_pixels=True) for n in names]
    victim = sorted((ds.StudyDate, ds.StudyInstanceUID) for ds in headers)[1][1]  # analysed second: oldest first
    predictor = Predictor()
    if stage.startswith("forward"):
        real_forward = predictor.forward
        victim_path = next(EXAMPLES / n for n, ds in zip(names, headers, strict=True) if ds.StudyInstanceUID == victim)
        victim_grid = predictor.to_grid(read_radiograph(victim_path)).shape
        assert [predictor.to_grid(read_radiograph(EXAMPLES / n)).shape for n in names].count(victim_grid) == 1

        def forward(grid: np.ndarray) -> object:
            if grid.shape == victim_grid:
                raise MemoryError("no room for this image")
            return real_forward(grid)

        monkeypatch.setattr(predictor, "forward", forward)
    else:
        real_finalize = batch_module.finalize_study

        def finalize_study(study_uid: str, *args: object, **kw: object) -> None:
            if study_uid == victim:
                raise OSError("disk full")
            real_finalize(study_uid, *args, **kw)

        monkeypatch.setattr(batch_module, "finalize_study", finalize_study)
    out = tmp_path / "out"
    report = run_batch([EXAMPLES / n for n in names], out, predictor, write_sr=False, write_overlays=False,
                       progress=False, model_in_workers=stage == "forward in a worker")
    assert report.n_studies == 2 and report.n_failures == 1
    failed = next(csv.DictReader((out / "failures.csv").open()))
    assert failed["code"] == "E_INTERNAL" and failed["study_instance_uid"] == victim
    assert ("MemoryError: no room" if stage.startswith("forward") else "OSError: disk full") in failed["reason"]
    assert len(list(out.glob("*.json"))) == 2
    monkeypatch.undo()
    rerun = run_batch([EXAMPLES / n for n in names], out, Predictor(), write_sr=False, write_overlays=False,
                      progress=False)
    assert (rerun.n_studies, rerun.n_studies_skipped, rerun.n_failures) == (1, 2, 0)
    assert not list(csv.DictReader((out / "failures.csv").open()))


@pytest.mark.parametrize("overlays", [False, True], ids=["json", "json and overlays"])
def test_the_model_in_the_decoding_workers_gives_the_main_process_results(tmp_path: Path, overlays: bool) -> None:
    """On the CPU the model runs in the decoding workers by default; the findings are those of the model run
    in the main process, and asking for it without workers is an error that says why.  The workers then hand
    over no float image (only the 8-bit copy the overlay draws on, when overlays are written): the study JSON
    (image size included) and the overlay pictures are the same as from the main process."""
    from calcdx.inference import run_batch

    names = [EXAMPLES / n for n in ("img000004.dcm", "img000011.dcm", "img000013.dcm")]
    predictor = Predictor()

    def rows(folder: Path) -> list[tuple[str, ...]]:
        keys = ("sop_instance_uid", "pattern", "probability", "long_axis_mm", "site", "margin")
        return sorted(tuple(r[k] for k in keys) for r in csv.DictReader((folder / "summary.csv").open()))

    def studies(folder: Path) -> dict[str, dict]:
        found = {}
        for path in folder.glob("*.json"):
            data = json.loads(path.read_text())
            if "study_instance_uid" in data:
                data.pop("created")
                found[path.name] = data
        return found

    for where, flag in (("workers", True), ("main", False)):
        report = run_batch(names, tmp_path / where, predictor, workers=2, write_sr=False, write_overlays=overlays,
                           progress=False, model_in_workers=flag)
        assert (report.n_images, report.n_failures) == (3, 0)
    assert rows(tmp_path / "workers") == rows(tmp_path / "main")
    assert any(r[1] for r in rows(tmp_path / "workers"))  # findings to compare
    assert studies(tmp_path / "workers") == studies(tmp_path / "main") and len(studies(tmp_path / "main")) == 3
    pictures = {p.name: p.read_bytes() for p in (tmp_path / "workers").glob("*_overlay.png")}
    assert pictures == {p.name: p.read_bytes() for p in (tmp_path / "main").glob("*_overlay.png")}
    assert len(pictures) == (3 if overlays else 0)
    with pytest.raises(ValueError, match="at least one worker"):
        run_batch(names, tmp_path / "none", predictor, workers=0, progress=False, model_in_workers=True)


def test_reduced_jpeg_2000_decoding_keeps_findings_on_the_files_pixel_grid() -> None:
    """img000011 (0.2 mm, JPEG 2000): decoded at 1/2 resolution with fast_decode, at full by default;
    the same definite patterns, boxes and centroids in the file's pixel coordinates, sizes in mm alike."""
    from calcdx.datasets.reader import read_radiograph

    path = EXAMPLES / "img000011.dcm"
    fast, exact = Predictor(fast_decode=True), Predictor()
    assert fast.decode_spacing_mm == fast.card.input_spacing_mm and exact.decode_spacing_mm is None
    coarse = read_radiograph(path, coarsest_spacing_mm=fast.decode_spacing_mm)
    full = read_radiograph(path, coarsest_spacing_mm=exact.decode_spacing_mm)
    assert (coarse.levels_discarded, full.levels_discarded) == (1, 0)
    a, b = fast.analyze(coarse), exact.analyze(full)
    assert (a.rows, a.columns, a.pixel_spacing_mm) == (b.rows, b.columns, b.pixel_spacing_mm) == (
        *full.shape, full.pixel_spacing_mm)
    assert a.to_dict()["levels_discarded"] == 1 and b.to_dict()["levels_discarded"] == 0

    def definite(result: object) -> dict[str, Finding]:
        found: dict[str, Finding] = {}
        for f in result.findings:  # the strongest finding per pattern comes first
            if f.operating_point.value == "definite":
                found.setdefault(f.pattern.value, f)
        return found

    da, db = definite(a), definite(b)
    assert set(da) == set(db) and da
    for pattern, f in da.items():
        g = db[pattern]
        assert np.hypot(*np.subtract(f.centroid_mm, g.centroid_mm)) < 3.0, pattern
        assert abs(f.long_axis_mm - g.long_axis_mm) < 0.25 * g.long_axis_mm + 1.0, pattern
        assert f.bbox_px[2] <= full.shape[0] and f.bbox_px[3] <= full.shape[1]


def test_score_matches_the_batch_findings_to_the_examples_ground_truth(batch: Path, tmp_path: Path) -> None:
    """``calcdx score``: the three predicted examples are found by SOP Instance UID (the batch ran on copies);
    the other eleven rows of the manifest count as missing, their lesions missed."""
    out = tmp_path / "score"
    result = subprocess.run([CALCDX, "score", str(batch), str(EXAMPLES / "manifest.csv"), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tumoral_calcinosis" in result.stdout
    report = json.loads((out / "findings_report.json").read_text())
    by_length = report["per_pattern"]["tumoral_calcinosis"]["measurement"]["long_axis_ratio_by_true_length"]
    shown = next(line for line in result.stdout.splitlines()[::-1] if line.startswith("tumoral_calcinosis"))
    for label, entry in by_length.items():  # every range with a lesion found, as median (n); the others left out
        assert (f"{label} {entry['median']:.2f} ({entry['n']})" in shown) if entry["n"] else (f"{label} " not in shown)
    assert any(entry["n"] for entry in by_length.values()), by_length
    assert report["n_images"] == 14 and report["images_missing"] == 11 and report["images_not_analyzed"] == 0
    tumoral = report["per_pattern"]["tumoral_calcinosis"]["possible"]["sensitivity_by_body_part"]
    body_of_img4 = next(r["body_part"] for r in csv.DictReader((EXAMPLES / "manifest.csv").open())
                        if r["path"] == "img000004.dcm")
    assert tumoral[body_of_img4] > 0  # found there (the missing images count as misses in their regions)
    lesions = list(csv.DictReader((out / "lesions.csv").open()))
    found = {(r["image"], r["pattern"]) for r in lesions if r["detected_at"] == "definite"}
    assert {("img000004.dcm", "tumoral_calcinosis"), ("img000010.dcm", "cppd")} <= found
    hit = next(r for r in lesions if r["image"] == "img000004.dcm" and r["pattern"] == "tumoral_calcinosis")
    assert 0.5 < float(hit["found_long_mm"]) / float(hit["truth_long_mm"]) < 2.0
    assert float(hit["centroid_error_mm"]) < 10.0
    findings = list(csv.DictReader((out / "findings.csv").open()))
    assert findings and {r["outcome"] for r in findings} <= {"hit", "duplicate", "false_positive"}
    bad = subprocess.run([CALCDX, "score", str(tmp_path / "nowhere"), str(EXAMPLES / "manifest.csv"), "--out",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "does not exist" in bad.stderr


def test_finding_to_dict_equals_asdict_converted_and_round_trips() -> None:
    """The shallow ``to_dict`` gives what ``dataclasses.asdict`` gave, and ``from_dict`` reads it back."""
    from dataclasses import asdict

    from calcdx.findings import Morphology, OperatingPoint

    finding = Finding(Pattern.HADD, 0.91, OperatingPoint.DEFINITE, (10, 20, 40, 60), (25.5, 40.0), 9.2, 4.1, 28.0,
                      0.6, Margin.WELL_DEFINED, 0.12, 2, LocationClass.TENDON, "supraspinatus tendon", 0.8, "shoulder",
                      (Morphology(next(iter(Morphology)).value),), "clustered", (0.15, 0.15),
                      ((10.0, 20.0), (40.0, 60.0), (10.0, 60.0)), ((12.0, 22.0), (38.0, 58.0)))
    expected = asdict(finding)
    expected.update(pattern="hadd", operating_point="definite", margin=str(finding.margin),
                    location_class=str(finding.location_class), morphology=[str(m) for m in finding.morphology],
                    bbox_px=[10, 20, 40, 60], centroid_px=[25.5, 40.0], pixel_spacing_mm=[0.15, 0.15],
                    outline_px=[[10.0, 20.0], [40.0, 60.0], [10.0, 60.0]], long_axis_px=[[12.0, 22.0], [38.0, 58.0]],
                    centroid_mm=list(finding.centroid_mm), bbox_mm=list(finding.bbox_mm))
    assert json.dumps(finding.to_dict(), sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert Finding.from_dict(json.loads(json.dumps(finding.to_dict()))) == finding


def test_a_multiframe_file_gets_an_overlay_per_frame_from_the_workers(tmp_path: Path) -> None:
    """A two-frame radiograph (a bundled example and its mirror image, as a Multi-frame Grayscale Word Secondary
    Capture with modality DX): the workers draw one overlay per frame,
    and the main process writes each as PNG and Secondary Capture, the same as when it draws them itself.
    Each frame's findings carry their own differential in the JSON, and their SR regions name their frame
    (the SR passes dciodvfy)."""
    import pydicom

    from calcdx.inference import run_batch

    ds = pydicom.dcmread(EXAMPLES / "img000012.dcm")
    ds.decompress()
    pixels = ds.pixel_array
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # multi-frame word SC
    ds.NumberOfFrames = 2
    ds.PixelData = np.stack([pixels, pixels[:, ::-1]]).astype(pixels.dtype).tobytes()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "two_frames.dcm", enforce_file_format=True)
    predictor = Predictor()
    for where, flag in (("workers", True), ("main", False)):
        report = run_batch([tmp_path / "in"], tmp_path / where, predictor, workers=1, write_sr=flag,
                           progress=False, model_in_workers=flag)
        assert (report.n_images, report.n_failures) == (2, 0)
    pictures = {p.name: p.read_bytes() for p in (tmp_path / "workers").glob("*_overlay.png")}
    assert sorted(name[-15:] for name in pictures) == ["_f0_overlay.png", "_f1_overlay.png"]
    assert pictures == {p.name: p.read_bytes() for p in (tmp_path / "main").glob("*_overlay.png")}
    captures = sorted((tmp_path / "workers").glob("*_overlay.dcm"))
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in captures] == [1, 2]
    first = np.asarray(pydicom.dcmread(captures[0]).pixel_array)
    assert first.shape[2] == 3 and not np.array_equal(first, pydicom.dcmread(captures[1]).pixel_array)
    study = json.loads(next(p for p in (tmp_path / "workers").glob("*.json") if "images" in p.read_text()).read_text())
    by_frame = {im["frame_index"]: im["findings"] for im in study["images"]}
    assert sorted(by_frame) == [0, 1] and by_frame[0]
    assert all(f["differential"]["ranking"] for findings in by_frame.values() for f in findings)
    sr_path = next((tmp_path / "workers").glob("*_sr.dcm"))
    assert dciodvfy_errors(sr_path) == []
    frames = []

    def walk(items: object) -> None:
        for item in items or []:
            if item.get("ValueType") == "IMAGE" and "ReferencedFrameNumber" in item.ReferencedSOPSequence[0]:
                frames.append(int(item.ReferencedSOPSequence[0].ReferencedFrameNumber))
            walk(item.get("ContentSequence"))

    walk(pydicom.dcmread(sr_path).ContentSequence)
    assert sorted(frames) == [1] * len(by_frame[0]) + [2] * len(by_frame[1])
