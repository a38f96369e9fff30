"""A batch's failures file: rows appended study by study (not the whole file again), one row per file at the
end, a row a killed batch tore skipped on the next run."""

from __future__ import annotations

from pathlib import Path

from calcdx.inference.batch import _FailureLog, _read_failures


def _row(path: str, code: str = "E_NOT_PROJECTION") -> dict[str, str]:
    return {"path": path, "study_instance_uid": "1.2.3", "code": code, "reason": "modality CT is not a radiograph"}


def test_rows_are_appended_until_one_must_go(tmp_path: Path) -> None:
    file = tmp_path / "failures-rank0.csv"
    log = _FailureLog(file, {"/a.dcm": _row("/a.dcm")})
    assert list(_read_failures(file)) == ["/a.dcm"]
    inode = file.stat().st_ino
    for name in ("/b.dcm", "/c.dcm"):
        log.add(_row(name))
        log.flush()
    log.add(_row("/b.dcm", "E_CORRUPT"))  # the same file again, another reason: the last row wins
    log.flush()
    assert file.stat().st_ino == inode  # appended to, not written again
    assert {p: r["code"] for p, r in _read_failures(file).items()} == {
        "/a.dcm": "E_NOT_PROJECTION", "/b.dcm": "E_CORRUPT", "/c.dcm": "E_NOT_PROJECTION"}
    log.add(_row("/d.dcm"))
    log.remove("/d.dcm")  # not written yet: nothing to take back
    log.flush()
    assert file.stat().st_ino == inode and "/d.dcm" not in _read_failures(file)
    log.remove("/a.dcm")  # in the file: read this time, so the file is written again without it
    log.flush()
    assert file.stat().st_ino != inode
    assert sorted(_read_failures(file)) == ["/b.dcm", "/c.dcm"]
    log.rewrite()
    assert len(file.read_text(encoding="utf-8").splitlines()) == 3  # the header and one row per file


def test_a_torn_last_row_is_skipped(tmp_path: Path) -> None:
    file = tmp_path / "failures-rank0.csv"
    _FailureLog(file, {"/a.dcm": _row("/a.dcm")})
    with open(file, "a", encoding="utf-8") as fh:
        fh.write("/data/export/slice0007.d")  # a kill in the middle of a row
    assert list(_read_failures(file)) == ["/a.dcm"]
    assert _read_failures(tmp_path / "none.csv") == {}
