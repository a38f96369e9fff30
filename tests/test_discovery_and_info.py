"""Study discovery (folders, list files, DICOMDIR) and `calcdx info` on real files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage, generate_uid

from calcdx.cli.main import main
from calcdx.datasets.discovery import discover
from tests.reader_fixtures import sample_file, small_radiograph


def _study(folder: Path, n: int, study_uid: str, series_number: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in reversed(range(n)):  # written out of order on purpose
        ds = small_radiograph(32)
        ds = copy.deepcopy(ds)
        ds.StudyInstanceUID = study_uid
        ds.SeriesNumber = series_number
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"im{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_folder_tree_groups_studies_and_orders_instances(tmp_path: Path) -> None:
    a, b = generate_uid(), generate_uid()
    _study(tmp_path / "p1" / "s1", 3, a)
    _study(tmp_path / "p2", 2, b)
    (tmp_path / "p2" / "readme.bin").write_bytes(b"not dicom")
    found = discover([tmp_path])
    assert {s.study_uid for s in found.studies} == {a, b}
    study_a = next(s for s in found.studies if s.study_uid == a)
    assert [i.instance_number for i in study_a.instances] == [1, 2, 3]
    assert [p.name for p, _ in found.skipped] == ["readme.bin"]
    assert found.skipped[0][1].code == "E_NOT_DICOM"


def test_list_file_and_missing_entries(tmp_path: Path) -> None:
    paths = _study(tmp_path / "s", 2, generate_uid())
    listing = tmp_path / "batch.txt"
    listing.write_text(f"# my batch\n{paths[0].relative_to(tmp_path)}\n{paths[1]}\nmissing.dcm\n")
    found = discover([listing])
    assert found.n_instances == 2
    assert any("missing.dcm" in str(p) for p, _ in found.skipped)


def test_dicomdir_is_read_and_entries_stay_inside_its_root(tmp_path: Path) -> None:
    src = _study(tmp_path / "src", 2, generate_uid())
    fs = FileSet()
    for p in src:
        import pydicom

        fs.add(pydicom.dcmread(p))
    media = tmp_path / "media"
    fs.write(media)
    found = discover([media / "DICOMDIR"])
    assert found.n_instances == 2
    assert all(i.path.resolve().is_relative_to(media.resolve()) for s in found.studies for i in s.instances)


def test_info_cli_table_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = sample_file("RG3_J2KR.dcm")
    ct = sample_file("CT_small.dcm")
    assert main(["info", good, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rec = data["files"][0]
    assert rec["status"] == "accepted" and rec["spacing_source"] == "assumed"
    assert rec["transfer_syntax"].startswith("JPEG 2000")
    assert any("MONOCHROME1 inverted" in s for s in rec["applied"])
    assert rec["decoder"] == "pylibjpeg" and rec["photometric"] == "MONOCHROME1"
    assert main(["info", good, ct]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "modality CT" in out and "ACCEPTED" in out


def test_info_as_installed_console_script() -> None:
    exe = Path(sys.executable).with_name("calcdx")
    result = subprocess.run([str(exe), "info", sample_file("RG1_UNCR.dcm")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1955x1841" in result.stdout and "ACCEPTED" in result.stdout
    assert "native" in result.stdout  # the decoder column


def _escaping_dicomdir(tmp_path: Path) -> tuple[Path, Path]:
    """A real DICOMDIR (pydicom FileSet) with 2 images, one entry rewritten to point outside."""
    import pydicom

    fs = FileSet()
    for p in _study(tmp_path / "src", 2, generate_uid()):
        fs.add(pydicom.dcmread(p))
    media = tmp_path / "media"
    fs.write(media)
    raw = (media / "DICOMDIR").read_bytes()
    old, new = b"PT000000\\ST000000\\SE000000\\IM000000", b"..\\OUTSIDE0\\OUTSIDE0\\OUTSIDE0\\SECRE"
    assert len(old) == len(new) and raw.count(old) == 1  # same length: record offsets stay valid
    (media / "DICOMDIR").write_bytes(raw.replace(old, new))
    secret = tmp_path / "OUTSIDE0" / "OUTSIDE0" / "OUTSIDE0" / "SECRE"
    secret.parent.mkdir(parents=True)
    secret.write_bytes((media / "PT000000" / "ST000000" / "SE000000" / "IM000000").read_bytes())
    return media, secret


def test_dicomdir_entry_outside_its_root_is_skipped_with_a_reason(tmp_path: Path) -> None:
    media, secret = _escaping_dicomdir(tmp_path)
    found = discover([media])
    assert found.n_instances == 1  # the entry inside the root is still read
    assert [i.path.name for s in found.studies for i in s.instances] == ["IM000001"]
    (path, error), = found.skipped
    assert path == secret.resolve() and "outside its folder" in error.reason


def test_discovery_order_is_deterministic_by_series_then_instance(tmp_path: Path) -> None:
    uid = generate_uid()
    _study(tmp_path / "b", 2, uid, series_number=2)
    _study(tmp_path / "a", 3, uid, series_number=1)
    first = discover([tmp_path])
    again = discover([tmp_path / "b", tmp_path / "a"])
    order = [(i.series_number, i.instance_number) for i in first.studies[0].instances]
    assert order == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    assert [i.path for i in again.studies[0].instances] == [i.path for i in first.studies[0].instances]


def test_sidecar_files_in_folders_are_passed_over_but_named_ones_refused(tmp_path: Path) -> None:
    _study(tmp_path, 1, generate_uid())
    (tmp_path / "labels.json").write_text("{}")
    assert discover([tmp_path]).skipped == []
    found = discover([tmp_path / "labels.json"])
    assert [e.code for _, e in found.skipped] == ["E_NOT_DICOM"]


def _relabelled(path: Path, sop_class: str, manufacturer: str) -> Path:
    """The study's first radiograph saved again beside it as another SOP class from ``manufacturer``."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Manufacturer = manufacturer
    target = path.with_name(f"{manufacturer}-{sop_class}.dcm")
    ds.save_as(target, enforce_file_format=True)
    return target


def test_calcdx_own_sr_and_overlays_are_passed_over_and_counted(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A results folder inside the input folder: calcdx's SRs and overlay Secondary Captures (its SOP classes
    with Manufacturer "calcdx") and its follow-up index are no inputs and no failures; another maker's SR is
    still an input (and refused later, with its reason), and so is a radiograph whatever its maker."""
    first = _study(tmp_path, 1, generate_uid())[0]
    ours = [_relabelled(first, str(Comprehensive3DSRStorage), "calcdx"),
            _relabelled(first, str(SecondaryCaptureImageStorage), "calcdx")]
    theirs = _relabelled(first, str(Comprehensive3DSRStorage), "ACME")
    simulated = _relabelled(first, str(pydicom.dcmread(first).SOPClassUID), "calcdx")
    (tmp_path / "followup-index-rank0.jsonl").write_text('{"patient_id": "P"}\n')
    found = discover([tmp_path])
    assert sorted(found.own_outputs) == sorted(ours)
    assert found.skipped == []
    assert {i.path for i in found.studies[0].instances} == {first, theirs, simulated}
    assert main(["info", str(ours[0]), "--json"]) == 1
    (record,) = json.loads(capsys.readouterr().out)["files"]
    assert record["status"] == "refused" and record["code"] == "E_NOT_RADIOGRAPH" and record["modality"] == "CR"
    assert "calcdx wrote" in record["reason"]


def test_a_second_copy_of_an_instance_is_passed_over_and_named(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The same SOP Instance UID in two files (a folder holding copies): the first found is the instance, the
    other is passed over (analysed twice, its findings would count twice in the study); ``calcdx info`` still
    reads it and names the file it duplicates.  Files without a SOP Instance UID are never taken for copies."""
    kept = _study(tmp_path / "a", 1, generate_uid())[0]
    copy = tmp_path / "b" / "copy.dcm"
    copy.parent.mkdir()
    copy.write_bytes(kept.read_bytes())
    found = discover([tmp_path])
    assert found.duplicates == [(copy, kept)] and found.n_instances == 1 and found.skipped == []
    assert main(["info", str(tmp_path), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["files"]
    assert [(r["path"], r["status"], r.get("duplicate_of")) for r in records] == [
        (str(kept), "accepted", None), (str(copy), "accepted", str(kept))]
    for path in (kept, copy):
        ds = pydicom.dcmread(path)
        del ds.SOPInstanceUID
        ds.save_as(path)
    assert discover([tmp_path]).n_instances == 2


def test_info_json_reports_refusals_with_header_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    assert main(["info", sample_file("CT_small.dcm"), str(junk), "--json"]) == 1
    records = json.loads(capsys.readouterr().out)["files"]
    ct, bad = records
    assert ct["status"] == "refused" and ct["code"] == "E_NOT_RADIOGRAPH" and ct["modality"] == "CT"
    assert ct["rows"] == 128 and ct["transfer_syntax"] == "Explicit VR Little Endian"
    assert bad["code"] == "E_NOT_DICOM" and bad["path"] == str(junk)


def test_info_options_are_validated(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--voi", "middle"], ["--default-spacing", "0"], ["--default-spacing", "abc"]):
        with pytest.raises(SystemExit) as info:
            main(["info", sample_file("RG3_J2KR.dcm"), *bad])
        assert info.value.code == 2
    assert "should be" in capsys.readouterr().err


def test_info_voi_none_and_default_spacing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", sample_file("RG3_UNCR.dcm"), "--voi", "none", "--default-spacing", "0.1", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)["files"][0]
    assert rec["pixel_spacing_mm"] == [0.1, 0.1] and rec["spacing_source"] == "assumed"
    assert not any(step.startswith("VOI") for step in rec["applied"])


def test_info_on_nothing_found_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path)]) == 1
    assert "0 accepted, 0 refused" in capsys.readouterr().out


def test_real_dicomdir_from_pydicom_groups_six_studies() -> None:
    import pydicom.data

    root = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    via_dicomdir = discover([root / "DICOMDIR"])
    via_folder = discover([root])  # a folder holding a DICOMDIR is read through it
    assert len(via_dicomdir.studies) == 6 and via_dicomdir.n_instances == 31 and not via_dicomdir.skipped
    assert [s.paths for s in via_folder.studies] == [s.paths for s in via_dicomdir.studies]
    cr = next(s for s in via_dicomdir.studies if s.instances[0].modality == "CR")
    assert [(i.series_number, i.path.name) for i in cr.instances] == [(1, "6154"), (2, "6247"), (3, "6278")]
    for study in via_dicomdir.studies:
        keys = [(i.series_number, i.instance_number) for i in study.instances]
        assert keys == sorted(keys)
