"""The grading checks on their own, with a tiny fake model whose scores we choose."""

from __future__ import annotations

import pandas as pd
import torch

from lmlogits_grader import checks
from lmlogits_grader.checks import _reference_problem

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
    def __call__(self, input_ids):
        class Output:
            logits = SCORES.repeat(1, input_ids.shape[1], 1)  # (1, n_tokens, 6)

        return Output()


def table(ids, probabilities=None):
    if probabilities is None:
        probabilities = [PROBABILITIES[i] for i in ids]
    return pd.DataFrame({"tokens": [f" t{i}" for i in ids], "probabilities": probabilities})


def problem(ids, k, probabilities=None):
    return _reference_problem(table(ids, probabilities), "x", k, FakeTokenizer(), FakeModel())


def test_exact_answer_is_accepted():
    assert problem([0, 1, 2], 3) == ""


def test_tied_candidates_may_come_in_either_order():
    assert problem([0, 2, 1], 3) == ""


def test_a_tie_at_the_cut_off_accepts_either_candidate():
    assert problem([0, 1], 2) == "" and problem([0, 2], 2) == ""


def test_a_wrong_token_is_rejected_without_naming_the_answer():
    message = problem([0, 1, 3], 3)
    assert message == "the token at rank 3 is not the expected one"


def test_probabilities_must_agree_to_1e_4():
    close = [PROBABILITIES[0] + 5e-5, PROBABILITIES[1], PROBABILITIES[2]]
    assert problem([0, 1, 2], 3, close) == ""
    off = [PROBABILITIES[0] + 5e-4, PROBABILITIES[1], PROBABILITIES[2]]
    assert "off by more than 0.0001" in problem([0, 1, 2], 3, off)


def test_ascending_order_is_rejected():
    assert "not sorted" in problem([3, 1, 0], 3)


def _function(body):
    namespace = {"torch": torch, "pd": pd}
    exec("def predict_next_tokens(phrase, k):\n" + body, namespace)
    return namespace["predict_next_tokens"]


def test_checks_turn_student_errors_into_verdicts():
    raising = _function("    raise KeyError('oops')\n")
    verdict = checks.check_returns_k_rows(raising, FakeTokenizer(), FakeModel())
    assert not verdict.passed
    assert "raised KeyError: 'oops'" in verdict.message


def test_a_list_instead_of_a_dataframe_is_explained():
    as_list = _function("    return [(' t0', 0.5)] * k\n")
    verdict = checks.check_returns_k_rows(as_list, FakeTokenizer(), FakeModel())
    assert not verdict.passed and "returned a list, expected a pandas DataFrame" in verdict.message


def test_logits_instead_of_probabilities_are_explained():
    logits = _function(
        "    return pd.DataFrame({'tokens': [' t0'] * k, 'probabilities': [3.0] * k})\n"
    )
    verdict = checks.check_returns_probabilities(logits, FakeTokenizer(), FakeModel())
    assert not verdict.passed and "look like logits" in verdict.message
