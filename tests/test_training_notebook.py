"""The retraining notebook runs top to bottom (nbclient) on a tiny folder of DICOMs + labels CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from calcdx.datasets.manifest import read_manifest
from tests.models_fixtures import make_tiny_dataset

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "retrain_local_data.ipynb"


@pytest.mark.slow
def test_retrain_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "dicoms"
    manifest = make_tiny_dataset(data, n=24, size=128)
    labels = data / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "patient_id", "labels"])
        for row in read_manifest(manifest):
            w.writerow([row.path.name, row.patient_id, ";".join(sorted(p.value for p in row.labels))])
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit without outputs"
    monkeypatch.setenv("CALCDX_DATA_DIR", str(data))
    monkeypatch.setenv("CALCDX_LABELS_CSV", str(labels))
    monkeypatch.setenv("CALCDX_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("CALCDX_EPOCHS", "1")
    monkeypatch.setenv("CALCDX_ARCH", "tiny")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    assert (tmp_path / "out" / "run" / "model" / "model_card.json").is_file()
    assert (tmp_path / "out" / "evaluation" / "report.json").is_file()
