"""notebooks/walkthrough.ipynb: committed without outputs, and it runs end to end on small data."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the walkthrough has code cells"
    dirty = [
        i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None
    ]
    assert dirty == [], (
        f"code cells {dirty} carry outputs: strip them (jupyter nbconvert --clear-output)"
    )
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


@pytest.mark.slow
def test_walkthrough_runs_on_small_data(tmp_path, monkeypatch) -> None:
    """Executes every cell with a kernel from this interpreter (~1 minute on 2 cores)."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += (
        f"\nMONTHS = 26\nHORIZON = 6\nN_PATHS = 300\nN_WINDOWS = 2\nWORKDIR = {str(tmp_path)!r}\n"
    )
    # the kernel is this interpreter (the project's venv), whatever kernelspecs the machine has
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(str(tmp_path / "jupyter" / "kernels" / "phasecast-venv"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="phasecast-venv",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    report = tmp_path / "report" / "report.html"
    assert report.exists() and report.stat().st_size > 50_000
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [
        o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(images) >= 4  # phases, backtest, fans, flags
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "max |total - sum of phases|" in text and "expected: 256 GPUs x 240 h" in text
