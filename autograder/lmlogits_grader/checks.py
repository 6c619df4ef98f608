"""Grading checks for ``predict_next_tokens``: one check per rubric line.

Every check takes the student's function and returns a :class:`Verdict` instead of
raising, so that a test cell can end with ``assert verdict.passed, verdict.message``:
the feedback then shows one friendly sentence, not a traceback through this module,
and never the hidden phrases or the reference values.
"""

from __future__ import annotations

import builtins
import inspect
import math
import types
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from lmlogits.globals_check import check_global_vars
from lmlogits_grader.reference import next_token_probabilities

# The only notebook globals a student's function may use (the course's rule).
ALLOWED_GLOBALS = ("torch", "tokenizer", "pd", "model")

# Phrases the student never saw: different lengths, punctuation, one token (" Hello").
HIDDEN_PHRASES = (
    "Hello",
    "The cat sat on the",
    "When the rain stopped, we went outside to",
    "Why?",
    "My friends and I plan to visit the museum on Saturday because it is",
    "I like to go to the library on rainy",
)
VISIBLE_PHRASE = "This weekend I plan to"

PROBABILITY_TOLERANCE = 1e-4  # a student's probability may differ this much
TIE_TOLERANCE = 1e-6  # candidates this close may come in either order
_CANDIDATE_MARGIN = 50  # reference candidates looked at beyond rank k, for ties

# Notebook variables that a function reading globals would pick up by mistake; the
# isolation check replaces them with decoys.
NOTEBOOK_LEFTOVERS = (
    "phrase",
    "batch",
    "input_ids",
    "model_output",
    "logits",
    "last_token_logits",
    "last_token_probabilities",
    "most_likely_token_id",
    "most_likely_tokens",
    "tokens",
    "top_10",
    "k",
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check: whether it passed, and what to tell the student."""

    passed: bool
    message: str


def check_returns_k_rows(func: Callable, tokenizer, model) -> Verdict:
    """A DataFrame with columns ``tokens`` and ``probabilities`` and exactly k rows."""
    for k in (1, 5, 10):
        table, problem = _call(func, VISIBLE_PHRASE, k)
        if problem:
            return Verdict(False, problem)
        problem = _table_problem(table, k)
        if problem:
            return Verdict(False, f"predict_next_tokens({VISIBLE_PHRASE!r}, {k}): {problem}")
    return Verdict(True, "returns a tokens/probabilities DataFrame with k rows for k = 1, 5, 10")


def check_matches_reference(func: Callable, tokenizer, model) -> Verdict:
    """Same tokens, probabilities within 1e-4, descending, on phrases the student never saw."""
    wrong = 0
    first_problem = ""
    cases = [(phrase, 5) for phrase in HIDDEN_PHRASES] + [(HIDDEN_PHRASES[1], 10)]
    for number, (phrase, k) in enumerate(cases, start=1):
        table, problem = _call(func, phrase, k)
        if not problem:
            problem = _table_problem(table, k) or _reference_problem(
                table, phrase, k, tokenizer, model
            )
        if problem:
            wrong += 1
            first_problem = first_problem or f"hidden phrase {number}: {problem}"
    if wrong:
        return Verdict(
            False,
            f"{wrong} of {len(cases)} hidden phrases give a different top-k than the reference "
            f"(first one: {first_problem}). Check that the function uses its `phrase` and `k` "
            "parameters, the last position's logits, and softmax over the vocabulary.",
        )
    return Verdict(True, f"matches the reference on all {len(cases)} hidden phrases")


def check_returns_probabilities(func: Callable, tokenizer, model) -> Verdict:
    """Values in (0, 1] that add up to at most 1: probabilities, not logits."""
    for phrase in (VISIBLE_PHRASE, HIDDEN_PHRASES[2]):
        table, problem = _call(func, phrase, 10)
        if problem:
            return Verdict(False, problem)
        if not isinstance(table, pd.DataFrame) or "probabilities" not in table.columns:
            return Verdict(False, "no 'probabilities' column to check: return a DataFrame")
        values = _as_floats(table["probabilities"])
        if values is None:
            return Verdict(False, "the 'probabilities' column does not hold numbers")
        if not all(0.0 < v <= 1.0 for v in values):
            return Verdict(
                False,
                "some 'probabilities' are outside (0, 1]: these look like logits. Apply "
                "softmax(dim=-1) to the last position's logits.",
            )
        if math.fsum(values) > 1.0 + PROBABILITY_TOLERANCE:
            return Verdict(
                False,
                "the probabilities add up to more than 1: softmax must run over the "
                "vocabulary (dim=-1) of one position.",
            )
    return Verdict(True, "returns probabilities (in (0, 1], at most 1 in total)")


def check_no_global_vars(func: Callable, tokenizer, model) -> Verdict:
    """Passes ``check_global_vars`` with the course's allowed list."""
    try:
        check_global_vars(func, allowed_globals=list(ALLOWED_GLOBALS))
    except AssertionError as error:
        return Verdict(False, str(error))
    except TypeError as error:
        return Verdict(False, f"predict_next_tokens is not a plain function: {error}")
    return Verdict(True, "uses only its parameters and torch, tokenizer, pd, model")


def check_works_without_notebook_globals(func: Callable, tokenizer, model) -> Verdict:
    """Right answers when only the allowed globals exist, and when leftovers are decoys."""
    func = inspect.unwrap(func) if callable(func) else func  # look under @torch.no_grad()
    if not isinstance(func, types.FunctionType):
        return Verdict(False, "predict_next_tokens is not a plain Python function")
    allowed = {"torch": torch, "tokenizer": tokenizer, "pd": pd, "model": model}
    decoys = {name: _Decoy(name) for name in NOTEBOOK_LEFTOVERS}
    decoys["phrase"] = "Decoy phrase that is not the one asked about"
    settings = [
        ("with only torch, tokenizer, pd and model defined", allowed),
        ("with the notebook's other variables changed", {**decoys, **allowed}),
    ]
    for description, namespace in settings:
        isolated = _rebuild(func, namespace)
        for phrase in (HIDDEN_PHRASES[0], HIDDEN_PHRASES[2]):
            table, problem = _call(isolated, phrase, 5)
            if not problem:
                problem = _table_problem(table, 5) or _reference_problem(
                    table, phrase, 5, tokenizer, model
                )
            if problem:
                return Verdict(
                    False,
                    f"called {description}, the function fails: {problem}. It must compute "
                    "everything from its parameters (see check_global_vars).",
                )
    return Verdict(True, "gives the right answer without the notebook's other variables")


# --- helpers -------------------------------------------------------------------------


class _Decoy:
    """Stands in for a notebook variable; any use of it fails loudly."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        raise RuntimeError(f"used the notebook variable `{self._name}`")

    def __getitem__(self, key):
        raise RuntimeError(f"used the notebook variable `{self._name}`")

    def __repr__(self) -> str:
        return f"<notebook variable {self._name}>"


def _rebuild(func: types.FunctionType, namespace: dict) -> types.FunctionType:
    """The same code, defaults and closure, with ``namespace`` as its only globals."""
    isolated_globals = {"__builtins__": builtins, "__name__": "__isolated__", **namespace}
    isolated = types.FunctionType(
        func.__code__, isolated_globals, func.__name__, func.__defaults__, func.__closure__
    )
    isolated.__kwdefaults__ = func.__kwdefaults__
    return isolated


def _call(func: Callable, phrase: str, k: int) -> tuple[object, str]:
    """Call the student's function; on an exception, describe it instead of raising."""
    if not callable(func):
        return None, f"predict_next_tokens is not a function but a {type(func).__name__}"
    try:
        return func(phrase, k), ""
    except Exception as error:  # a student's bug is a result, not a crash
        return None, (
            f"predict_next_tokens(<phrase>, {k}) raised {type(error).__name__}: {error}"
        )


def _table_problem(table: object, k: int) -> str:
    if not isinstance(table, pd.DataFrame):
        return (
            f"returned a {type(table).__name__}, expected a pandas DataFrame built with "
            "pd.DataFrame({'tokens': ..., 'probabilities': ...})"
        )
    missing = [c for c in ("tokens", "probabilities") if c not in table.columns]
    if missing:
        columns = list(table.columns)
        return f"the DataFrame needs columns 'tokens' and 'probabilities', has {columns}"
    if len(table) != k:
        return f"expected k = {k} rows, got {len(table)}: use the `k` parameter in topk"
    return ""


def _as_floats(column: pd.Series) -> list[float] | None:
    try:
        return [float(v) for v in column]
    except (TypeError, ValueError):
        return None


def _reference_problem(table: pd.DataFrame, phrase: str, k: int, tokenizer, model) -> str:
    """Compare a student's top-k table with the reference; '' when they agree.

    Rank ``r`` of the student's table must hold a token whose reference probability is
    within ``TIE_TOLERANCE`` of the reference's rank-``r`` probability (so tied
    candidates may come in either order), with a probability within
    ``PROBABILITY_TOLERANCE`` of it. Repeated texts are not rejected as such: distinct
    ids can decode to the same text (partial UTF-8 bytes all decode to "\ufffd").
    """
    probabilities = _as_floats(table["probabilities"])
    if probabilities is None:
        return "the 'probabilities' column does not hold numbers"
    if any(a < b - TIE_TOLERANCE for a, b in zip(probabilities, probabilities[1:], strict=False)):
        return "rows are not sorted from most to least likely"
    reference = next_token_probabilities(phrase, tokenizer, model)  # (vocab_size,)
    top = torch.topk(reference, min(k + _CANDIDATE_MARGIN, reference.numel()))
    candidates: dict[str, list[float]] = {}
    for token_id, p in zip(top.indices.tolist(), top.values.tolist(), strict=True):
        candidates.setdefault(tokenizer.decode(token_id), []).append(p)
    ranked = top.values.tolist()
    tokens = list(table["tokens"])
    for rank, (token, p) in enumerate(zip(tokens, probabilities, strict=True)):
        expected = ranked[rank]
        if not any(abs(q - expected) <= TIE_TOLERANCE for q in candidates.get(str(token), [])):
            return f"the token at rank {rank + 1} is not the expected one"
        if abs(p - expected) > PROBABILITY_TOLERANCE:
            return f"the probability at rank {rank + 1} is off by more than {PROBABILITY_TOLERANCE}"
    return ""
