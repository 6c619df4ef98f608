"""nbgrader preprocessors that make autograding and feedback safe for this course.

Each one fixes a way in which plain nbgrader 0.9.6 loses a grade or leaks a test:

- :class:`RobustExecute`: a kernel that dies (``os._exit``, a segfault, out of memory)
  makes nbgrader drop the student's whole notebook and leave stale grades; here the
  dying cell and every later cell score 0 with an explanation, and the rest of the batch
  goes on.
- :class:`SafeDeduplicateIds`: a duplicated graded cell makes nbgrader abort the whole
  batch (``SchemaTooOldError``, jupyter/nbgrader#1083); here the extra copy becomes an
  ordinary cell and the last copy is graded, as nbgrader intends.
- :class:`HideHiddenTestTracebacks`: feedback would show hidden test code in tracebacks
  (jupyter/nbgrader#917); here a failed hidden test shows only its message. Run before
  ``ClearHiddenTests``, which removes the hidden code itself.
"""

from __future__ import annotations

from nbclient.exceptions import DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import DeduplicateIds, Execute, NbGraderPreprocessor

HIDDEN_TESTS_MARK = "BEGIN HIDDEN TESTS"


def _error_output(name: str, value: str) -> NotebookNode:
    traceback = [f"{name}: {value}"]
    return NotebookNode(output_type="error", ename=name, evalue=value, traceback=traceback)


class RobustExecute(Execute):
    """``Execute`` that grades a notebook whose kernel died instead of discarding it."""

    def preprocess(self, nb, resources=None, km=None):
        self._kernel_died = False
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._kernel_died:
            cell.outputs = [
                _error_output("DeadKernelError", "not run: the kernel died in an earlier cell")
            ]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._kernel_died = True
            cell.outputs.append(
                _error_output("DeadKernelError", "the kernel died while running this cell")
            )
            return cell, resources


class SafeDeduplicateIds(DeduplicateIds):
    """Keep the last cell of each duplicated ``grade_id``; earlier copies become plain cells."""

    def preprocess_cell(self, cell, resources, cell_index):
        if not (utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell)):
            return cell, resources
        grade_id = cell.metadata.nbgrader.get("grade_id")
        if grade_id in self.grade_ids:
            self.log.warning("Cell with id '%s' appears more than once; grading the last", grade_id)
            del cell.metadata["nbgrader"]  # nbgrader sets {} here, which aborts the batch
        else:
            self.grade_ids.add(grade_id)
        return cell, resources


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """In graded cells with hidden tests, reduce error tracebacks to ``Name: message``."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and HIDDEN_TESTS_MARK in cell.source:
            for output in cell.outputs:
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources
