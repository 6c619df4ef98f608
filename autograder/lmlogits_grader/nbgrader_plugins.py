"""nbgrader preprocessors that make autograding and feedback safe for this course.

Each one fixes a way in which plain nbgrader 0.9.6 loses a grade or leaks a test:

- :class:`SafeDeduplicateIds`: a duplicated graded cell makes nbgrader abort the whole
  batch (``SchemaTooOldError``, jupyter/nbgrader#1083); here the extra copy becomes an
  ordinary cell and the last copy is graded, as nbgrader intends.
- :class:`HideHiddenTestTracebacks`: feedback would show hidden test code in tracebacks
  (jupyter/nbgrader#917); here a failed hidden test shows only its message. Run before
  ``ClearHiddenTests``, which removes the hidden code itself.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import DeduplicateIds, NbGraderPreprocessor

HIDDEN_TESTS_MARK = "BEGIN HIDDEN TESTS"


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
