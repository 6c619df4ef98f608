"""nbgrader configuration of the LM-logits course (run nbgrader from this folder).

Timeouts (seconds), per cell, keyed on nbgrader's grade_id (students cannot change it):
- the model-loading cell: LMLOGITS_LOAD_TIMEOUT, default 600, since the first run
  downloads distilgpt2 (about 350 MB) and nbgrader's default of 30 s is too short;
- every other cell: LMLOGITS_CELL_TIMEOUT, default 60 (with distilgpt2 on a CPU the
  slowest cell, the hidden checks, takes a few seconds); a cell that runs longer is
  interrupted and scores 0, and grading goes on with the next cell.
When the grader calls the student's function (lmlogits_grader/probe.py), each call is
stopped after LMLOGITS_CHECK_SECONDS (default 30), and a whole submission after
LMLOGITS_SUBMISSION_SECONDS (default 900): see lmlogits_grader/execute.py.
"""

import os

from nbconvert.preprocessors import (
    ClearMetadataPreprocessor,
    CoalesceStreamsPreprocessor,
    CSSHTMLHeaderPreprocessor,
)
from nbconvert.preprocessors.sanitize import SanitizeHTML
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ComputeChecksums,
    GetGrades,
    IgnorePattern,
    IncludeHeaderFooter,
    InstantiateTests,
    LimitOutput,
    LockCells,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
    SaveCells,
)

from lmlogits_grader.blanks import HintedBlanks
from lmlogits_grader.execute import SandboxedExecute
from lmlogits_grader.judge import Judge
from lmlogits_grader.nbgrader_plugins import (
    HideHiddenTestTracebacks,
    QuickCheckCellMetadata,
    SafeDeduplicateIds,
)

c = get_config()  # noqa: F821 (provided by nbgrader when it reads this file)

c.CourseDirectory.course_id = "lm-logits"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# generate_assignment: nbgrader's own steps, with hinted blanks instead of ClearSolutions
c.GenerateAssignment.preprocessors = [
    IncludeHeaderFooter,
    InstantiateTests,
    LockCells,
    HintedBlanks,
    ClearOutput,
    CheckCellMetadata,
    ComputeChecksums,
    SaveCells,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]

# autograde: the notebook runs in a sandboxed kernel that only hands back data
# (SandboxedExecute); the Judge, in this process, decides every graded cell. Survive
# duplicated cells and dead kernels; read-only and test cells are restored from the
# source by OverwriteCells; a deleted graded cell scores 0; student HTML is sanitized.
# A print's text and its newline can reach the notebook as two outputs or one, as the
# kernel happened to flush them: CoalesceStreams makes them one, every time.
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    SafeDeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    QuickCheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    SandboxedExecute,
    Judge,
    CoalesceStreamsPreprocessor,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    SanitizeHTML,
    QuickCheckCellMetadata,
]

_LOAD_TIMEOUT = int(os.environ.get("LMLOGITS_LOAD_TIMEOUT", "600"))
_CELL_TIMEOUT = int(os.environ.get("LMLOGITS_CELL_TIMEOUT", "60"))


def _cell_timeout(cell):
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return _LOAD_TIMEOUT if grade_id in ("load_model", "setup") else _CELL_TIMEOUT


c.Execute.timeout = _CELL_TIMEOUT
c.Execute.timeout_func = _cell_timeout
# a student loop that ignores interrupts must not fail the whole notebook
c.Execute.raise_on_iopub_timeout = False
# once the last cell and the grader's probes have run, stop the kernel at once: its
# sandbox (and every process in it) goes with it, without waiting for Python to tear
# down torch
c.Execute.shutdown_kernel = "immediate"
# the kernel's start-up warning about unencrypted TCP is noise in the logs
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]

# nbgrader scores a test cell that writes anything to stderr as 0 (nbgrader issue 1904).
# Library warnings (torch, transformers, pandas) must never cost points, and real
# failures show up as errors anyway: drop every stderr output before scoring.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"[\s\S]*"

# Each question's mark scheme is in its (locked) markdown cell of the source, between
# "### BEGIN MARK SCHEME" and "### END MARK SCHEME": generate_assignment removes it from
# the release after SaveCells has stored it, OverwriteCells puts it back into the
# autograded notebook that formgrader shows graders, and the feedback removes it again.
# nbgrader would only accept it in a "task" cell, which would add a graded cell.
c.ClearMarkScheme.enforce_metadata = False

# feedback: never show hidden test code (in the source or in tracebacks), nor a mark scheme
c.GenerateFeedback.preprocessors = [
    GetGrades,
    HideHiddenTestTracebacks,
    ClearHiddenTests,
    ClearMarkScheme,
    SanitizeHTML,
    CSSHTMLHeaderPreprocessor,
]

# Student HTML (outputs, markdown answers) loses scripts, event handlers, iframes,
# SVG and JavaScript outputs; tables and plain formatting stay (pandas tables, plots
# as PNG). The instructor's formgrader shows the sanitized autograded notebook.
c.SanitizeHTML.tags = [
    "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
]
c.SanitizeHTML.attributes = {"a": ["href", "title"], "*": ["class"], "td": ["align"],
                             "th": ["align"]}
c.SanitizeHTML.strip = True
c.SanitizeHTML.enabled = True  # nbconvert leaves it off unless asked
c.CoalesceStreamsPreprocessor.enabled = True  # the same
