"""The notebooks run as a person would run them: the solution top to bottom, the untouched
student copy up to its first blank; nbgrader validate agrees."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import course_figures
import nbformat
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
    assert "Vocabulary size: 50,257 tokens" in solution_run.stream("load_model")
    assert "decoded: [' This', ' weekend', ' I', ' plan', ' to']" in solution_run.stream("step1")
    assert "logits shape: (1, 5, 50257)" in solution_run.stream("step2")
    line = solution_run.stream("step4")
    assert re.fullmatch(
        r"Most likely next token: '.+' \(id \d+\), probability \d+\.\d\d%\n", line
    ), line
    assert solution_run.stream("check_globals").startswith("check_global_vars: OK")


@pytest.mark.colab
def test_the_built_in_model_is_announced_as_not_distilgpt2(solution_run):
    # the tests run the built-in offline model (conftest): its figures are not the course's
    assert os.environ["LMLOGITS_MODEL"] == "tiny"
    banner = solution_run.stream("load_model")
    assert banner.startswith("!!!!")
    assert "NOT distilgpt2: this notebook is running the course's built-in offline model" in banner
    assert "Its predictions differ from the distilgpt2 figures written in this notebook." in banner


@pytest.mark.colab
def test_the_explore_section_draws_a_chart_and_a_slider(solution_run):
    outputs = solution_run.cell("explore").outputs
    kinds = [key for output in outputs for key in output.get("data", {})]
    assert "image/png" in kinds  # what a static render shows: T = 1
    assert "application/vnd.jupyter.widget-view+json" in kinds  # the slider, in a live kernel


def test_the_global_check_cell_does_not_pass_an_unwritten_function(tmp_path):
    # steps 1-5 done, the function still the released stub: the check must not say OK
    solution, student = (nbformat.read(path, as_version=4) for path in (SOLUTION, STUDENT))
    stub = next(c for c in student.cells if c.metadata["nbgrader"]["grade_id"]
                == "predict_next_tokens")
    for cell in solution.cells:
        if cell.metadata["nbgrader"]["grade_id"] == "predict_next_tokens":
            cell.source = stub.source
    path = tmp_path / SOLUTION.name
    nbformat.write(solution, path)
    result = run_notebook(path)
    failed = result.failed_cell()
    assert failed.metadata["nbgrader"]["grade_id"] == "check_globals"
    assert result.stream("check_globals") == ""
    assert [o.ename for o in failed.outputs if o.output_type == "error"] == [
        "NotImplementedError"
    ]


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
    assert result.stream("load_model").startswith("Model: distilgpt2 (the course model")
    for grade_id, phrase in course_figures.TABLE_CELLS.items():
        tokens = [token for token, _ in course_figures.TOP5[phrase]]
        table = result.html(grade_id)
        cells = re.findall(r'<td id="T_\w+_row\d+_col(\d)"[^>]*>(.*?)</td>', table)
        # show_table quotes tokens so that their leading space shows: ' go'
        shown_tokens = [html.unescape(value) for column, value in cells if column == "0"]
        shown_probabilities = [float(value) for column, value in cells if column == "1"]
        assert shown_tokens == [repr(token) for token in tokens]
        assert shown_probabilities == pytest.approx(
            [probability for _, probability in course_figures.TOP5[phrase]], abs=1e-4
        )
