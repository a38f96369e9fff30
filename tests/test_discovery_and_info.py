"""Study discovery (folders, list files, DICOMDIR) and `calcdx info` on real files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

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
    assert main(["info", good, ct]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "modality CT" in out and "ACCEPTED" in out


def test_info_as_installed_console_script() -> None:
    exe = Path(sys.executable).with_name("calcdx")
    result = subprocess.run([str(exe), "info", sample_file("RG1_UNCR.dcm")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "1955x1841 px" in result.stdout
