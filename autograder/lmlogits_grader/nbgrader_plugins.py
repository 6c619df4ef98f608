"""nbgrader preprocessors that make autograding and feedback safe for this course.

Each one fixes a way in which plain nbgrader 0.9.6 loses a grade or leaks a test:

- :class:`SafeDeduplicateIds`: a duplicated graded cell makes nbgrader abort the whole
  batch (``SchemaTooOldError``, jupyter/nbgrader#1083); here the extra copy becomes an
  ordinary cell and the last copy is graded, as nbgrader intends.
- :class:`HideHiddenTestTracebacks`: feedback would show hidden test code in tracebacks
  (jupyter/nbgrader#917); here a failed hidden test shows only its message. Run before
  ``ClearHiddenTests``, which removes the hidden code itself.
- :class:`QuickCheckCellMetadata`: the same metadata check as ``CheckCellMetadata``,
  without re-checking nbgrader's schema itself for every cell (``jsonschema.validate``
  does; 0.1 s of every notebook's 0.11 s, twice per autograded submission).
"""

from __future__ import annotations

import functools
import traceback

import jsonschema
from nbgrader import utils
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.nbgraderformat.common import BaseMetadataValidator
from nbgrader.preprocessors import CheckCellMetadata, DeduplicateIds, NbGraderPreprocessor

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


class _QuickSchemaCheck(BaseMetadataValidator):
    """The JSON-schema part of nbgrader's cell check, with the schema's validator built
    once; nbgrader's own code still makes every other check (see below)."""

    @functools.cached_property
    def _schema_validator(self):
        cls = jsonschema.validators.validator_for(self.schema)
        cls.check_schema(self.schema)
        return cls(self.schema)

    def validate_cell(self, cell) -> None:
        metadata = cell.metadata.get("nbgrader")
        if metadata is None or metadata.get("schema_version", 0) != self.schema_version:
            return super().validate_cell(cell)  # nbgrader's own errors for other versions
        error = jsonschema.exceptions.best_match(self._schema_validator.iter_errors(metadata))
        if error is not None:
            raise error


class _QuickMetadataValidator(MetadataValidator, _QuickSchemaCheck):
    """nbgrader's metadata validator; its call to the base class's schema check lands
    in :class:`_QuickSchemaCheck` (method resolution order)."""


@functools.lru_cache(maxsize=1)
def _quick_validator() -> _QuickMetadataValidator:
    return _QuickMetadataValidator()


class QuickCheckCellMetadata(CheckCellMetadata):
    """``CheckCellMetadata`` with the schema checked once per process, not once per cell."""

    def preprocess(self, nb, resources):
        try:
            _quick_validator().validate_nb(nb)
        except ValidationError:
            self.log.error(traceback.format_exc())
            message = "Notebook failed to validate; the nbgrader metadata may be corrupted."
            self.log.error(message)
            raise ValidationError(message) from None
        return nb, resources
