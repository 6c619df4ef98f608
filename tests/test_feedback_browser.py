"""The feedback page as a student sees it: rendered by a real browser (Debian's
headless Chromium, driven by Playwright), checked on the page's DOM at 1280 px.

Chromium is installed by ``make test`` (``make browser``: Debian's ``chromium`` when
root with apt). Where no Chromium can be found the tests skip and say so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lmlogits_grader import course, feedback

pytestmark = pytest.mark.autograde

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
WIDTH = 1280

# Boxes of text a student reads (printed output, error messages, the grader's verdicts)
# whose content is wider than the box: the student would have to scroll sideways.
CLIPPED_BOXES = """() => [...document.querySelectorAll('div.output_subarea, div.output_area pre')]
  .filter(box => box.scrollWidth > box.clientWidth + 1)
  .map(box => box.innerText.slice(0, 80))"""


# the students whose pages are checked: the kinds of tests/conftest.py's graded class
STUDENTS = {"ada": "correct", "ben": "global_phrase"}


@pytest.fixture(scope="module")
def pages(request):
    """Feedback of a correct notebook and of one whose checks fail with long messages,
    as made by parallel grading with warm kernels (the session's class of every kind,
    tests/conftest.py)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (make browser installs Debian's chromium)")
    graded = request.getfixturevalue("every_kind_graded")
    assert all(graded.outcome[kind] for kind in STUDENTS.values())
    return {student: graded.pages / kind / course.ASSIGNMENT / f"{course.ASSIGNMENT}.html"
            for student, kind in STUDENTS.items()}


def _render(page_file: Path, script: str, html: str | None = None):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            if html is None:
                page.goto(page_file.as_uri())
            else:
                page.set_content(html)
            return page.evaluate(script)
        finally:
            browser.close()


def test_no_message_box_scrolls_sideways_at_1280_px(pages):
    long_messages = pages["ben"].read_text()
    assert "hidden phrases give a different top-k" in long_messages  # long lines are there
    assert _render(pages["ben"], CLIPPED_BOXES) == []
    assert _render(pages["ada"], CLIPPED_BOXES) == []


def test_without_the_course_style_the_same_page_scrolls(pages):
    # the check can fail: nbgrader's page without our style sheet has clipped boxes
    html = pages["ben"].read_text().replace(feedback.STYLE, "")
    assert feedback.STYLE_ID not in html
    assert _render(pages["ben"], CLIPPED_BOXES, html=html) != []


def test_ungraded_answers_say_awaiting_grading_and_the_plot_is_shown(pages):
    shown = _render(pages["ada"], """() => ({
        text: document.body.innerText,
        plots: [...document.querySelectorAll('img')].filter(
            img => img.src.startsWith('data:image/png') && img.naturalWidth > 100).length,
        padded: getComputedStyle(document.querySelector('table td') || document.body)
            .paddingLeft,
    })""")
    assert "17 of the 17 points graded so far; 6 points awaiting grading" in shown["text"]
    assert shown["text"].count("awaiting grading, 2 points") >= 3  # Q1-Q3, in the list
    assert "Score: 0.0 / 2.0" not in shown["text"]
    assert shown["plots"] >= 1  # the bar chart, drawn by the warm kernel
    assert shown["padded"] not in ("0px", "")


def _formgrader_html(root: Path, student: str) -> str:
    """The page formgrader shows a grader for this student's notebook: nbgrader's own
    exporter and template ("formgrade"), as its submission handler calls them."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    exporter = HTMLExporter(template_name="formgrade",
                            extra_template_basedirs=[handlers.template_path])
    notebook = root / "autograded" / student / course.ASSIGNMENT / f"{course.ASSIGNMENT}.ipynb"
    resources = {"assignment_id": course.ASSIGNMENT, "notebook_id": course.ASSIGNMENT,
                 "submission_id": "x", "index": 0, "total": 1, "base_url": "/",
                 "student": student, "last_name": None, "first_name": None,
                 "notebook_path": str(notebook)}
    html, _ = exporter.from_filename(str(notebook), resources=resources)
    return html


VISIBLE_TEXT = "() => document.body.innerText"


def test_graders_see_the_mark_schemes_and_students_do_not(pages, every_kind_graded):
    root, student = every_kind_graded.root, STUDENTS["ada"]
    grader_text = _render(pages["ada"], VISIBLE_TEXT, html=_formgrader_html(root, student))
    student_text = _render(pages["ada"], VISIBLE_TEXT)
    schemes = [line for line in grader_text.split("\n") if "Mark scheme (graders only" in line]
    assert len(schemes) == 3, schemes  # Q1, Q2 and Q3, each above the answer to grade
    assert "No code is expected" in grader_text
    assert "Q3." in student_text  # the feedback shows the questions...
    assert "graders only" not in student_text  # ...but not how they are marked
    assert "MARK SCHEME" not in pages["ada"].read_text()
