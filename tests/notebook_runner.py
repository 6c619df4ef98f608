"""Run a notebook in a fresh kernel, the way a person's "Run all" would, and keep the result."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


@dataclass
class RunResult:
    nb: nbformat.NotebookNode
    error: CellExecutionError | None

    def cell(self, grade_id: str):
        for cell in self.nb.cells:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                return cell
        raise KeyError(grade_id)

    def stream(self, grade_id: str, name: str = "stdout") -> str:
        return "".join(
            o.get("text", "") for o in self.cell(grade_id).get("outputs", [])
            if o.output_type == "stream" and o.name == name
        )

    def html(self, grade_id: str) -> str:
        return "".join(
            o.get("data", {}).get("text/html", "")
            for o in self.cell(grade_id).get("outputs", [])
            if o.output_type in ("execute_result", "display_data")
        )

    def failed_cell(self):
        """The first cell whose outputs hold an error, or None."""
        for cell in self.nb.cells:
            if any(o.output_type == "error" for o in cell.get("outputs", [])):
                return cell
        return None


def run_notebook(path: Path, timeout: int = 300) -> RunResult:
    nb = copy.deepcopy(nbformat.read(path, as_version=4))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={
        "metadata": {"path": str(path.parent)}
    })
    try:
        client.execute()
    except CellExecutionError as error:
        return RunResult(nb, error)
    return RunResult(nb, None)
