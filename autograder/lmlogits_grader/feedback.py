"""Feedback: nbgrader's feedback page, made readable for a student.

nbgrader (``generate_feedback``) writes one HTML page per student. Two things in it
mislead or hide what a student needs:

- a written answer nobody has graded yet shows "Score: 0.0 / 2.0", and the total counts
  it as 0 ("17.0 / 23.0"); here it says "awaiting grading", and the total says how many
  of the points graded so far were earned and how many are still to grade;
- a long message is one line in a box that scrolls sideways, and table cells have no
  padding; a style sheet makes messages wrap and tables readable.

:func:`make_readable` rewrites one page from the gradebook's view of that student; it
changes only nbgrader's own score texts and adds one ``<style>`` element, so student
content is untouched (it was sanitized before, see ``nbgrader_config.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

STYLE_ID = "readable-feedback"
STYLE = f'<style type="text/css" id="{STYLE_ID}">' + """
/* messages wrap instead of scrolling sideways */
pre, div.output_area pre, div.output_subarea pre, .output_text pre {
    white-space: pre-wrap;
    overflow-wrap: anywhere;
}
div.output_subarea { max-width: 100%; overflow-x: visible; }
/* tables (pandas DataFrames) with room between their columns */
table.dataframe td, table.dataframe th, .rendered_html td, .rendered_html th {
    padding: 0.25em 0.75em;
}
.awaiting-grading { color: #8a6d3b; font-style: italic; }
</style>
"""
AWAITING = "awaiting grading"


def _points(value: float) -> str:
    return f"{value:g}"


def make_readable(html: str, awaiting: dict[str, float], earned: float, graded_max: float,
                  notebook: str) -> str:
    """The page with ``awaiting`` cells (``{grade_id: points}``, not graded yet) marked,
    the total restated as ``earned`` of ``graded_max`` points graded so far, and the
    style sheet added."""
    for grade_id, points in awaiting.items():
        name = re.escape(grade_id)
        label = f'<span class="awaiting-grading">{AWAITING}</span>, {_points(points)} points'
        # the table of contents: <a href="#q1">Written response</a> (Score: 0.0 / 2.0)
        html = re.sub(rf'(<a href="#{name}">[^<]*</a>) \(Score: [^)]*\)',
                      lambda m, label=label: f"{m.group(1)} ({label})", html, count=1)
        # the cell's own heading: <a name="q1"></a> ... Score: 0.0 / 2.0 <a href="#top">
        html = re.sub(rf'(<a name="{name}"></a>.*?)Score: [\d.]+ / [\d.]+(\s*<a href="#top">)',
                      lambda m, label=label: f"{m.group(1)}{label}{m.group(2)}", html,
                      count=1, flags=re.S)
    if awaiting:
        still = sum(awaiting.values())
        total = (f"Score: {_points(earned)} of the {_points(graded_max)} points graded so "
                 f"far; {_points(still)} points {AWAITING}")
        html = re.sub(rf"(<h4>{re.escape(notebook)} )\(Score: [^)]*\)",
                      lambda m: f"{m.group(1)}({total})", html, count=1)
    if f'id="{STYLE_ID}"' not in html:
        html = html.replace("</head>", STYLE + "</head>", 1)
    return html


def rewrite(root: Path, student: str, assignment: str) -> None:
    """Make the feedback page of ``student`` readable (see :func:`make_readable`)."""
    from nbgrader.api import MissingEntry

    from lmlogits_grader import course, record

    page = course.feedback_page(root, student, assignment)
    if not page.is_file():
        return
    with record.open_gradebook(Path(root)) as gradebook:
        try:
            notebook = gradebook.find_submission_notebook(assignment, assignment, student)
        except MissingEntry:
            return
        grades = list(notebook.grades)
        awaiting = {g.name: float(g.max_score) for g in grades if g.needs_manual_grade}
        graded = [g for g in grades if not g.needs_manual_grade]
        earned = sum(float(g.score) for g in graded)
        graded_max = sum(float(g.max_score) for g in graded)
    page.write_text(make_readable(page.read_text(), awaiting, earned, graded_max, assignment))
