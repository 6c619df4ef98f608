"""The judge's checks on their own: plain data in, verdicts out, with a tiny fake model
whose scores we choose. Nothing here runs a kernel."""

from __future__ import annotations

import base64

import nbformat
import pytest
import torch

from lmlogits_grader import checks, judge, probe
from lmlogits_grader.checks import Call, Reference, Table

# Last-position scores over a 6-token vocabulary: ids 1 and 2 tie for second place.
SCORES = torch.tensor([3.0, 2.0, 2.0, 1.0, 0.0, -1.0])
PROBABILITIES = SCORES.softmax(dim=-1).tolist()


class FakeTokenizer:
    def __call__(self, phrase, return_tensors=None):
        ids = torch.tensor([[0, 1]])
        return {"input_ids": ids} if return_tensors else {"input_ids": ids[0].tolist()}

    def decode(self, token_id):
        return f" t{int(token_id)}"


class FakeModel:
    class config:  # noqa: N801  (the attribute transformers models have)
        vocab_size = 6

    def __call__(self, input_ids):
        class Output:
            logits = SCORES.repeat(1, input_ids.shape[1], 1)  # (1, n_tokens, 6)

        return Output()


REFERENCE = Reference(FakeTokenizer(), FakeModel())


def table(ids, probabilities=None, rows=None):
    if probabilities is None:
        probabilities = [PROBABILITIES[i] for i in ids]
    return Table(("tokens", "probabilities"), len(ids) if rows is None else rows,
                 tuple(f" t{i}" for i in ids), tuple(probabilities))


def problem(ids, k, probabilities=None):
    return checks.reference_problem(table(ids, probabilities), "x", k, REFERENCE)


def test_exact_answer_is_accepted():
    assert problem([0, 1, 2], 3) == ""


def test_tied_candidates_may_come_in_either_order():
    assert problem([0, 2, 1], 3) == ""


def test_a_tie_at_the_cut_off_accepts_either_candidate():
    assert problem([0, 1], 2) == "" and problem([0, 2], 2) == ""


def test_a_wrong_token_is_rejected_without_naming_the_answer():
    assert problem([0, 1, 3], 3) == "the token at rank 3 is not the expected one"


def test_probabilities_must_agree_to_1e_4():
    close = [PROBABILITIES[0] + 5e-5, PROBABILITIES[1], PROBABILITIES[2]]
    assert problem([0, 1, 2], 3, close) == ""
    off = [PROBABILITIES[0] + 5e-4, PROBABILITIES[1], PROBABILITIES[2]]
    assert "off by more than 0.0001" in problem([0, 1, 2], 3, off)


def test_ascending_order_is_rejected():
    assert "not sorted" in problem([3, 1, 0], 3)


def test_a_table_whose_length_disagrees_with_its_columns_fails():
    assert "length does not match" in checks.table_problem(table([0, 1, 2], rows=2), 2, True)


def _calls(cell, **outcome):
    return [Call(p, k, hidden, **outcome) for p, k, hidden in probe.CALLS[cell]]


def test_an_exception_is_explained_on_the_visible_phrase_only():
    visible = checks.check_returns_k_rows(
        _calls("test_returns_k_rows", error="KeyError", error_message="'oops'"), REFERENCE)
    assert not visible.passed and "raised KeyError: 'oops'" in visible.message
    hidden = checks.check_matches_reference(
        _calls("test_matches_reference", error="ValueError",
               error_message="argument: The cat sat on the"), REFERENCE)
    assert not hidden.passed and "raised ValueError" in hidden.message
    assert "The cat" not in hidden.message


def test_type_names_from_student_code_are_not_repeated():
    verdict = checks.check_returns_k_rows(
        _calls("test_returns_k_rows", other_type="The_cat_sat_on_the"), REFERENCE)
    assert not verdict.passed and "an object of another type" in verdict.message
    assert "cat" not in verdict.message
    verdict = checks.check_returns_k_rows(_calls("test_returns_k_rows", other_type="list"),
                                          REFERENCE)
    assert "returned list, expected a pandas DataFrame" in verdict.message


def test_logits_instead_of_probabilities_are_explained():
    calls = [Call(p, k, h, table=table([0] * k, [3.0] * k)) for p, k, h in
             probe.CALLS["test_returns_probabilities"]]
    verdict = checks.check_returns_probabilities(calls, REFERENCE)
    assert not verdict.passed and "look like logits" in verdict.message


# --- each mistake costs once ----------------------------------------------------------


def _isolated(**outcome):
    return [Call(p, k, hidden, **outcome) for p, k, hidden in probe.ISOLATED_CALLS]


def _without_globals(in_notebook, alone, with_decoys=None):
    settings = [alone, alone if with_decoys is None else with_decoys]
    return checks.check_works_without_notebook_globals(in_notebook, settings)


def test_a_wrong_answer_that_reads_no_globals_keeps_the_global_points():
    wrong = _isolated(table=table([3, 4, 5, 0, 1]))  # the same wrong table both ways
    verdict = _without_globals(wrong, wrong)
    assert verdict.passed, verdict.message
    not_a_table = _isolated(other_type="list")
    assert _without_globals(not_a_table, not_a_table).passed


def test_an_answer_that_changes_without_the_notebook_variables_fails():
    in_notebook = _isolated(table=table([0, 1, 2, 3, 4]))
    verdict = _without_globals(in_notebook, _isolated(error="NameError", error_message="x"))
    assert not verdict.passed
    assert "raised NameError, while in the notebook it did not" in verdict.message
    assert "depends on a notebook variable" in verdict.message
    decoyed = _isolated(table=table([4, 3, 2, 1, 0]))
    verdict = _without_globals(in_notebook, in_notebook, with_decoys=decoyed)
    assert not verdict.passed and "with the notebook's other variables changed" in (
        verdict.message)
    assert "hidden phrase" not in verdict.message


def test_probabilities_may_differ_by_rounding_only():
    in_notebook = _isolated(table=table([0, 1, 2, 3, 4]))
    close = _isolated(table=table([0, 1, 2, 3, 4], [p + 1e-6 for p in PROBABILITIES[:5]]))
    far = _isolated(table=table([0, 1, 2, 3, 4], [p + 1e-2 for p in PROBABILITIES[:5]]))
    assert _without_globals(in_notebook, close).passed
    assert not _without_globals(in_notebook, far).passed


def _answers(**outcome):
    """Every function probe's answer, each call with ``outcome`` (the kernel's JSON)."""
    answers = {}
    specs = {**probe.CALLS, "test_works_without_notebook_globals": probe.ISOLATED_CALLS}
    for cell, cell_specs in specs.items():
        calls = [dict(outcome) for _ in cell_specs]
        answers[cell] = {"cell": cell, "defined": True, "calls": calls,
                         "isolated": [calls, calls]}
    return answers


@pytest.mark.parametrize("outcome, shown", [
    ({"error": "NotImplementedError", "message": ""}, "every call raised NotImplementedError"),
    ({"result": {"kind": "other", "type": "NoneType"}}, "it returns None"),
])
def test_a_function_never_written_earns_no_function_points(outcome, shown):
    answers = _answers(**outcome)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def predict_next_tokens(phrase, k):\n"
                                          "    raise NotImplementedError")]
    assert judge.check_no_global_vars(nb).passed  # reads no globals: passed before
    for cell in judge.JUDGED_CELLS - set(judge._STEP_CHECKS):
        verdict = judge.decide(cell, answers.get(cell), nb, REFERENCE, answers=answers)
        assert not verdict.passed, cell
    verdict = judge.decide("test_no_global_vars", None, nb, REFERENCE, answers=answers)
    assert shown in verdict.message and "does not return anything yet" in verdict.message


def test_a_function_that_works_on_some_phrases_is_written():
    calls = [Call("a", 5, True, error="IndexError"), Call("b", 5, True, table=table([0]))]
    assert checks.never_written(calls) == ""
    assert checks.never_written([Call("a", 5, True, timed_out=True)]) == ""
    assert checks.never_written([]) == ""


# --- what comes back from the kernel is untrusted --------------------------------------

MALFORMED_ANSWERS = [
    None, 7, "ok", [], {"cell": "test_returns_k_rows"},
    {"cell": "test_returns_k_rows", "defined": True, "calls": "all passed"},
    {"cell": "test_returns_k_rows", "defined": True, "calls": [None, 5, "x"]},
    {"cell": "test_returns_k_rows", "defined": True,
     "calls": [{"result": {"kind": "table", "columns": "tokens", "rows": -1}}] * 3},
    {"cell": "test_returns_k_rows", "defined": True,
     "calls": [{"result": {"kind": "table", "columns": ["tokens", "probabilities"],
                           "rows": 10**12, "tokens": [1, 2], "probabilities": [True]}}] * 3},
    {"cell": "test_matches_reference", "defined": True, "calls": [{"timeout": "yes"}] * 7},
    {"cell": "test_works_without_notebook_globals", "defined": True, "isolated": [[], 3]},
    {"cell": "test_step2", "variables": {"phrase": {"kind": "str", "value": "x"},
                                         "model_output.logits": {"kind": "array",
                                                                 "shape": [1, 2, 6],
                                                                 "float32": "%%%"}}},
    {"cell": "test_step3", "variables": {"phrase": {"kind": "str", "value": 5},
                                         "last_token_logits": {"kind": "array", "shape": [6],
                                                               "float32": ""}}},
    {"cell": "test_step1", "variables": {"phrase": {"kind": "str", "value": "x"},
                                         "input_ids": {"kind": "array", "shape": [1, 2],
                                                       "ints": [0, "1"]}}},
]


@pytest.mark.parametrize("answer", MALFORMED_ANSWERS)
def test_malformed_answers_fail_without_crashing(answer):
    cell = answer.get("cell", "test_returns_k_rows") if isinstance(answer, dict) else (
        "test_matches_reference")
    verdict = judge.decide(cell, answer, nbformat.v4.new_notebook(), REFERENCE)
    assert verdict.passed is False
    assert verdict.message


def _array(values, shape):
    raw = torch.tensor(values, dtype=torch.float32).numpy().tobytes()
    return {"kind": "array", "shape": shape, "float32": base64.b64encode(raw).decode()}


def test_step_answers_are_compared_with_the_reference():
    phrase = {"kind": "str", "value": "x"}
    right = {"cell": "test_step3", "variables": {
        "phrase": phrase, "last_token_logits": _array(SCORES.tolist(), [6])}}
    assert judge.decide("test_step3", right, None, REFERENCE).passed
    second_to_last = {"cell": "test_step3", "variables": {
        "phrase": phrase, "last_token_logits": _array((SCORES + 1).tolist(), [6])}}
    verdict = judge.decide("test_step3", second_to_last, None, REFERENCE)
    assert not verdict.passed and "last position" in verdict.message


def test_an_answer_for_another_cell_is_not_taken():
    answer = {"cell": "test_step1", "variables": {}}
    assert not judge.decide("test_step3", answer, None, REFERENCE).passed


# --- the global-variable rule on the submitted source ----------------------------------


def _notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def test_a_function_that_reads_a_notebook_variable_fails():
    nb = _notebook("phrase = 'hi'\n%matplotlib inline",
                   "def predict_next_tokens(text, k):\n    return tokenizer(phrase)")
    verdict = judge.check_no_global_vars(nb)
    assert not verdict.passed and "`phrase` on line 2" in verdict.message


def test_the_last_definition_counts_and_kernel_names_are_builtins():
    nb = _notebook(
        "def predict_next_tokens(phrase, k):\n    return last_token_probabilities",
        "!echo magics are fine",
        "@torch.no_grad()\ndef predict_next_tokens(phrase, k):\n"
        "    display(phrase)\n    return pd.DataFrame(tokenizer(phrase))",
    )
    assert judge.check_no_global_vars(nb).passed


def test_defaults_computed_in_the_notebook_fail():
    nb = _notebook("def predict_next_tokens(phrase, k, table=top_10):\n    return table")
    verdict = judge.check_no_global_vars(nb)
    assert not verdict.passed and "default value computed in the notebook" in verdict.message


def test_a_function_that_does_not_compile_has_no_definition():
    nb = _notebook("def predict_next_tokens(phrase, k):\n    return pd.DataFrame((")
    verdict = judge.check_no_global_vars(nb)
    assert not verdict.passed and "no `def predict_next_tokens`" in verdict.message


@pytest.mark.parametrize("cell", ["test_matches_reference", "test_works_without_notebook_globals"])
def test_a_probe_waits_for_a_looping_function_once(cell):
    # the probe's own code, run here as the kernel runs it, on a function that never
    # returns: its first call runs out of time, the others are not made
    started = []
    published = []

    def predict_next_tokens(phrase, k):
        started.append(phrase)
        while True:
            pass

    class Publisher:
        def publish(self, data, metadata):
            published.append(data[probe.MIME])

    class Shell:
        display_pub = Publisher()

    namespace = {"predict_next_tokens": predict_next_tokens, "get_ipython": Shell,
                 "torch": torch}
    exec(probe.probe_source(cell, 0.2), namespace)
    (answer,) = published
    calls = [*answer["calls"], *(call for group in answer.get("isolated", []) for call in group)]
    assert len(calls) >= 3
    assert calls == [{"timeout": True}] * len(calls)
    assert len(started) == 1
    assert probe.timed_out(answer)
