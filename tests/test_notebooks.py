"""The quickstart and rule-layer notebooks run top to bottom (nbclient), committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def test_rules_explorer_notebook_executes() -> None:
    nb = _run("rules_explorer.ipynb")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "haemodialysis: Metabolic (metastatic) calcinosis of chronic renal failure" in text
    assert "teenager     : Idiopathic tumoral calcinosis" in text


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALCDX_OUT_DIR", str(tmp_path / "quick"))
    monkeypatch.setenv("CALCDX_N_EXAMPLES", "3")
    _run("quickstart.ipynb")
    assert list((tmp_path / "quick").glob("*_overlay.png"))
    assert (tmp_path / "quick" / "summary.csv").is_file()
