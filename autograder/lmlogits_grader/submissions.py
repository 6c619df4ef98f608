"""Synthetic student submissions, made from the released notebook, for tests and the demo.

Each kind is the student copy with its blanks filled in, then changed in one way that
students really do it (a global instead of a parameter, logits for probabilities, a
deleted test cell, ...). The expected grade of each kind is written in the tests,
worked out from the rubric, not computed by this code.
"""

from __future__ import annotations

import copy
import textwrap

from lmlogits_grader.generate import ASSIGNMENTS, github_location, solution_copy, student_copy

ANSWERS = {
    "q1": "Batch of 1, one row per token of the phrase (5), one score per vocabulary entry.",
    "q2": "The logits for the token after 'This weekend I'; argmax = most likely next token.",
    "q3": "Repeat: pick a token (greedy or sampling, temperature, top-k), append, stop at EOS.",
}

CORRECT_BODY = '''
batch = tokenizer(phrase, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
probabilities = logits[0, -1, :].softmax(dim=-1)
top = torch.topk(probabilities, k)
tokens = [tokenizer.decode(token_id) for token_id in top.indices]
return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})
'''

# Function bodies for predict_next_tokens(phrase, k), one per kind of mistake.
BODIES = {
    "correct": CORRECT_BODY,
    "alternative": '''
input_ids = tokenizer(phrase, return_tensors="pt").input_ids
with torch.no_grad():
    output = model(input_ids=input_ids)
probabilities = torch.softmax(output.logits[:, -1, :], dim=-1)[0]
values, indices = probabilities.topk(k)
return pd.DataFrame(
    {"tokens": [tokenizer.decode(int(i)) for i in indices.tolist()],
     "probabilities": values.tolist()}
)
''',
    "global_probabilities": '''
top = torch.topk(last_token_probabilities, k)
tokens = [tokenizer.decode(token_id) for token_id in top.indices]
return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})
''',
    "returns_list": CORRECT_BODY.replace(
        'return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})',
        "return list(zip(tokens, top.values.tolist()))",
    ),
    "returns_dict": CORRECT_BODY.replace(
        'return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})',
        'return {"tokens": tokens, "probabilities": top.values.tolist()}',
    ),
    "wrong_columns": CORRECT_BODY.replace(
        '{"tokens": tokens, "probabilities"', '{"token": tokens, "probability"'
    ),
    "off_by_one": CORRECT_BODY.replace("logits[0, -1, :]", "logits[0, -2, :]"),
    "returns_logits": '''
batch = tokenizer(phrase, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
top = torch.topk(logits[0, -1, :], k)
tokens = [tokenizer.decode(token_id) for token_id in top.indices]
return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})
''',
    "ignores_k": CORRECT_BODY.replace(
        "torch.topk(probabilities, k)", "torch.topk(probabilities, 10)"
    ),
    "raises": 'raise ValueError("I have not finished this function")\n' + CORRECT_BODY,
    "infinite_loop": "while True:\n    pass\n" + CORRECT_BODY,
    "kills_kernel": "import os\n\nos._exit(1)\n" + CORRECT_BODY,
    "warns": '''
import sys
import warnings

warnings.warn("a warning from the student's own code", stacklevel=1)
print("debug: predict_next_tokens called", file=sys.stderr)
torch.tensor(torch.tensor([1.0]))  # torch warns: copy-construct from a tensor
''' + CORRECT_BODY,
}


def _function_source(body: str, parameters: str = "phrase, k") -> str:
    return f"def predict_next_tokens({parameters}):\n" + textwrap.indent(body.strip("\n"), "    ")


def _cell(nb, grade_id: str):
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


def _index(nb, grade_id: str) -> int:
    return nb.cells.index(_cell(nb, grade_id))


def correct_submission(assignment: str = ASSIGNMENTS[0], answer_questions: bool = True,
                       solve: bool = True):
    """The released notebook with every blank filled in as the solution does (with
    ``solve``; otherwise the code blanks are left as released)."""
    import nbformat

    from lmlogits_grader.generate import SOURCE_DIR

    source = nbformat.read(SOURCE_DIR / assignment / f"{assignment}.ipynb", as_version=4)
    location = github_location()
    released = student_copy(source, location, assignment)
    solved = solution_copy(source, location, assignment)
    for cell in released.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.metadata["nbgrader"].get("solution") and cell.cell_type == "code" and solve:
            cell.source = _cell(solved, grade_id).source
        elif grade_id in ANSWERS and answer_questions:
            cell.source = ANSWERS[grade_id]
    return released


def make_submission(kind: str, assignment: str = ASSIGNMENTS[0]):
    """A submission of the given kind (see :data:`KINDS`)."""
    nb = correct_submission(assignment, answer_questions=kind != "blank_answers")
    function = _cell(nb, "predict_next_tokens")
    if kind in BODIES:
        function.source = _function_source(BODIES[kind])
    elif kind == "global_phrase":
        # the classic: the parameter is named differently, the body reads the global
        function.source = _function_source(CORRECT_BODY, parameters="text, k")
    elif kind == "syntax_error":
        source = _function_source(CORRECT_BODY)
        function.source = source.replace("return pd.DataFrame(", "return pd.DataFrame((", 1)
    elif kind == "unwritten":
        # the function's cell left as released (its stub raises NotImplementedError)
        released = correct_submission(assignment, answer_questions=False, solve=False)
        function.source = _cell(released, "predict_next_tokens").source
    elif kind == "returns_none":
        # computes the table but forgets to return it
        function.source = _function_source(CORRECT_BODY.replace("return pd.DataFrame(",
                                                                "table = pd.DataFrame("))
    elif kind == "deleted_test_cell":
        del nb.cells[_index(nb, "test_matches_reference")]
    elif kind == "edited_test_cells":
        # a wrong function, and the tests that would catch it replaced by `pass`
        function.source = _function_source(BODIES["ignores_k"])
        for grade_id in ("test_returns_k_rows", "test_matches_reference"):
            _cell(nb, grade_id).source = "pass"
    elif kind == "moved_cells":
        # the answers moved to the top, the plot to the end: order of graded cells kept
        answers = [_cell(nb, grade_id) for grade_id in ("q1", "q2", "q3")]
        for cell in answers:
            nb.cells.remove(cell)
        nb.cells[1:1] = answers
        plot = _cell(nb, "plot")
        nb.cells.remove(plot)
        nb.cells.append(plot)
    elif kind == "duplicated_cells":
        duplicate = copy.deepcopy(_cell(nb, "test_step1"))
        duplicate["id"] = duplicate["id"] + "-copy"
        nb.cells.insert(_index(nb, "test_step1"), duplicate)
    elif kind == "cheats_checks":
        # reads the global phrase, then patches every checker it can reach to pass
        function.source = _function_source(CORRECT_BODY, parameters="text, k")
        cheat = copy.deepcopy(_cell(nb, "predict_next_tokens"))
        del cheat.metadata["nbgrader"]
        cheat["id"] = cheat["id"] + "-cheat"
        cheat.source = textwrap.dedent('''
            import lmlogits
            import lmlogits.globals_check


            def check_global_vars(*args, **kwargs):
                return None


            lmlogits.check_global_vars = check_global_vars
            lmlogits.globals_check.check_global_vars = check_global_vars
            try:  # the grader's own code: not there to patch (it runs outside the kernel)
                import lmlogits_grader.judge

                lmlogits_grader.judge.decide = lambda *args, **kwargs: True
            except ImportError:
                pass
        ''').strip()
        nb.cells.insert(_index(nb, "predict_next_tokens") + 1, cheat)
    elif kind not in ("correct", "blank_answers"):
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    return nb


KINDS = (
    *BODIES,
    "global_phrase",
    "unwritten",
    "returns_none",
    "syntax_error",
    "deleted_test_cell",
    "edited_test_cells",
    "moved_cells",
    "duplicated_cells",
    "cheats_checks",
    "blank_answers",
)
