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
