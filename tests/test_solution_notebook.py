"""The notebooks run as a person would run them: the solution top to bottom, the untouched
student copy up to its first blank; nbgrader validate agrees."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_runner import run_notebook

REPO = Path(__file__).resolve().parents[1]
NAME = "013-lm-logits"
SOLUTION = REPO / "solutions" / f"{NAME}.ipynb"
STUDENT = REPO / "notebooks" / f"{NAME}.ipynb"

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def solution_run():
    return run_notebook(SOLUTION)


def _table_shape(html: str) -> tuple[int, int]:
    body = html.split("<tbody>")[1]
    rows = body.count("<tr>")
    columns = html.split("<thead>")[1].split("</thead>")[0].count('class="col_heading')
    return rows, columns


@pytest.mark.colab
def test_solution_runs_top_to_bottom(solution_run):
    assert solution_run.error is None, solution_run.error


@pytest.mark.colab
def test_solution_prints_what_the_course_shows(solution_run):
    assert solution_run.stream("load_model").startswith("Model: ")
    assert "Vocabulary size: 50,257 tokens" in solution_run.stream("load_model")
    assert "logits shape: (1, 5, 50257)" in solution_run.stream("step2")
    line = solution_run.stream("step4")
    assert re.fullmatch(
        r"Most likely next token: '.+' \(id \d+\), probability \d+\.\d\d%\n", line
    ), line
    assert solution_run.stream("check_globals") == "check_global_vars: OK\n"


@pytest.mark.colab
@pytest.mark.parametrize(
    ("grade_id", "rows"), [("step5", 10), ("show_weekend", 5), ("show_be", 5), ("show_god", 5)]
)
def test_solution_tables_have_the_right_shape(solution_run, grade_id, rows):
    assert _table_shape(solution_run.html(grade_id)) == (rows, 2)


@pytest.mark.colab
def test_solution_draws_one_plot(solution_run):
    outputs = solution_run.cell("plot").outputs
    assert [o.output_type for o in outputs] == ["display_data"]
    assert "image/png" in outputs[0].data


@pytest.mark.colab
def test_solution_writes_nothing_to_stderr(solution_run):
    # covers pandas' FutureWarning (hide_index) and any library warning
    for cell in solution_run.nb.cells:
        for output in cell.get("outputs", []):
            assert not (output.output_type == "stream" and output.name == "stderr"), (
                cell.metadata["nbgrader"]["grade_id"],
                output.text,
            )


def test_untouched_student_copy_stops_at_the_first_blank():
    result = run_notebook(STUDENT)
    assert result.error is not None
    failed = result.failed_cell()
    assert failed.metadata["nbgrader"]["grade_id"] == "step1"
    error = next(o for o in failed.outputs if o.output_type == "error")
    assert error.ename == "NotImplementedError"
    assert "Fill in this blank" in error.evalue
    # every cell before it ran without error, and nothing after it ran
    index = result.nb.cells.index(failed)
    for cell in result.nb.cells[index + 1 :]:
        assert cell.cell_type != "code" or cell.outputs == []


def _validate(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [str(Path(sys.executable).parent / "nbgrader"), "validate", str(path)],
        capture_output=True, text=True, env=env, cwd=path.parent, timeout=600,
    )


def test_nbgrader_validate_passes_on_the_solution():
    result = _validate(SOLUTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success! Your notebook passes all the tests." in result.stdout


def test_nbgrader_validate_fails_on_the_untouched_student_copy():
    result = _validate(STUDENT)
    assert "NotImplementedError" in result.stdout or "failed" in result.stdout.lower()
    assert "Success!" not in result.stdout


# distilgpt2's published figures (the course's), to 1e-4
COURSE_TABLES = {
    "show_weekend": [" go", " take", " spend", " make", " do"],
    "show_be": [" be", " have", " the", " do", ","],
    "show_god": [" world", " Lord", " people", " earth", " children"],
}
COURSE_PROBABILITIES = {
    "show_weekend": [0.059828, 0.043880, 0.031570, 0.030519, 0.029206],
    "show_be": [0.648473, 0.021346, 0.012962, 0.009471, 0.007444],
    "show_god": [0.120081, 0.072237, 0.050226, 0.042750, 0.026753],
}


@pytest.mark.hub
def test_solution_tables_match_distilgpt2_figures(monkeypatch):
    from lmlogits import ModelUnavailableError, resolve_model

    try:
        resolve_model("distilgpt2")
    except ModelUnavailableError as error:
        pytest.skip(f"distilgpt2 is neither cached nor downloadable here: {error}")
    monkeypatch.setenv("LMLOGITS_MODEL", "distilgpt2")
    result = run_notebook(SOLUTION)
    assert result.error is None
    for grade_id, tokens in COURSE_TABLES.items():
        table = result.html(grade_id)
        cells = re.findall(r'<td id="T_\w+_row\d+_col(\d)"[^>]*>(.*?)</td>', table)
        # show_table quotes tokens so that their leading space shows: ' go'
        shown_tokens = [html.unescape(value) for column, value in cells if column == "0"]
        shown_probabilities = [float(value) for column, value in cells if column == "1"]
        assert shown_tokens == [repr(token) for token in tokens]
        assert shown_probabilities == pytest.approx(COURSE_PROBABILITIES[grade_id], abs=1e-4)
