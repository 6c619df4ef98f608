"""Grading checks: one per graded cell, on plain data, in the grader's own process.

The student's kernel hands back what the grader asked for (see
:mod:`lmlogits_grader.probe`), parsed by :mod:`lmlogits_grader.judge` into the small
types below; nothing here ever sees a student object or runs student code. Each check
returns a :class:`Verdict`: whether the cell earns its points, and one sentence for the
student. Messages never repeat what the student's code produced on a hidden input
(its text could carry the hidden phrase), and never reveal reference values.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch itself is imported where a check needs it: the grading
    import torch  # process's start-up (make grade, make grade-export) does without

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
LOGIT_TOLERANCE = 1e-3  # logits computed by the student's kernel vs the grader's
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

# Type names a message may repeat; any other name came from student code.
_KNOWN_TYPES = frozenset({
    "list", "dict", "tuple", "str", "int", "float", "bool", "NoneType", "set", "Series",
    "ndarray", "Tensor", "DataFrame", "generator", "function", "NotImplementedType",
})
_BUILTIN_ERRORS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check: whether it passed, and what to tell the student."""

    passed: bool
    message: str


@dataclass(frozen=True)
class Table:
    """What came back for a DataFrame: its column names, row count and two columns.

    ``tokens``/``probabilities`` are None when the column is missing; an entry is None
    when it was not a string (tokens) or not a finite number (probabilities).
    """

    columns: tuple[str, ...]
    rows: int
    tokens: tuple[str | None, ...] | None
    probabilities: tuple[float | None, ...] | None


@dataclass(frozen=True)
class Call:
    """One call ``predict_next_tokens(phrase, k)`` made by the probe, and its outcome."""

    phrase: str
    k: int
    hidden: bool
    table: Table | None = None  # the result, when it was a DataFrame
    other_type: str = ""  # the result's type name, when it was not
    error: str = ""  # the exception's type name, when it raised
    error_message: str = ""
    timed_out: bool = False
    lost: bool = False  # no answer came back (the kernel died or stopped answering)


class Reference:
    """The grader's own model: reference ids, logits and probabilities, cached per phrase."""

    def __init__(self, tokenizer, model) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self._logits: dict[str, torch.Tensor] = {}

    def input_ids(self, phrase: str) -> list[int]:
        return list(self.tokenizer(phrase)["input_ids"])

    def logits(self, phrase: str) -> torch.Tensor:
        """Shape ``(n_tokens, vocab_size)``: every position's scores for ``phrase``."""
        if phrase not in self._logits:
            if len(self._logits) > 256:
                self._logits.clear()
            import torch

            batch = self.tokenizer(phrase, return_tensors="pt")
            with torch.no_grad():
                self._logits[phrase] = self.model(**batch).logits[0].float()
        return self._logits[phrase]

    def probabilities(self, phrase: str) -> torch.Tensor:
        """Shape ``(vocab_size,)``: the next-token distribution after ``phrase``."""
        return self.logits(phrase)[-1].softmax(dim=-1)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def decode(self, token_id: int) -> str:
        return self.tokenizer.decode(int(token_id))


# --- helpers for messages ------------------------------------------------------------


def shown_type(name: str) -> str:
    return name if name in _KNOWN_TYPES else "an object of another type"


def _call_problem(call: Call) -> str:
    """Why a call gave no table, in words that are safe to show; '' when it gave one."""
    if call.lost:
        return "the kernel stopped answering while it ran (it died, or ran out of time)"
    if call.timed_out:
        return "did not finish in time (an endless loop?)"
    if call.error:
        name = call.error if call.error in _BUILTIN_ERRORS else "an exception"
        if call.hidden:
            return f"raised {name}"
        return f"raised {name}: {call.error_message[:200]}"
    if call.table is None:
        return (
            f"returned {shown_type(call.other_type)}, expected a pandas DataFrame built with "
            "pd.DataFrame({'tokens': ..., 'probabilities': ...})"
        )
    return ""


def table_problem(table: Table, k: int, hidden: bool) -> str:
    if "tokens" not in table.columns or "probabilities" not in table.columns:
        if hidden:
            return "the DataFrame needs columns 'tokens' and 'probabilities'"
        columns = list(table.columns)
        return f"the DataFrame needs columns 'tokens' and 'probabilities', has {columns}"
    if table.rows != k:
        return f"expected k = {k} rows, got {table.rows}: use the `k` parameter in topk"
    if table.tokens is None or table.probabilities is None:
        return "the columns could not be read"
    if len(table.tokens) != table.rows or len(table.probabilities) != table.rows:
        return "the DataFrame's length does not match the length of its columns"
    return ""


def reference_problem(table: Table, phrase: str, k: int, reference: Reference) -> str:
    """Compare a student's top-k table with the reference; '' when they agree.

    Rank ``r`` of the student's table must hold a token whose reference probability is
    within ``TIE_TOLERANCE`` of the reference's rank-``r`` probability (so tied
    candidates may come in either order), with a probability within
    ``PROBABILITY_TOLERANCE`` of it. Repeated texts are not rejected as such: distinct
    ids can decode to the same text (partial UTF-8 bytes all decode to "\ufffd").
    """
    probabilities = table.probabilities or ()
    if len(probabilities) < table.rows or any(p is None for p in probabilities):
        return "the 'probabilities' column does not hold numbers"
    if any(a < b - TIE_TOLERANCE for a, b in zip(probabilities, probabilities[1:], strict=False)):
        return "rows are not sorted from most to least likely"
    tokens = table.tokens or ()
    if len(tokens) < table.rows:
        return "the 'tokens' column could not be read"
    expected = reference.probabilities(phrase)  # (vocab_size,)
    import torch

    top = torch.topk(expected, min(k + _CANDIDATE_MARGIN, expected.numel()))
    candidates: dict[str, list[float]] = {}
    for token_id, p in zip(top.indices.tolist(), top.values.tolist(), strict=True):
        candidates.setdefault(reference.decode(token_id), []).append(p)
    ranked = top.values.tolist()
    for rank, (token, p) in enumerate(zip(tokens, probabilities, strict=False)):
        wanted = ranked[rank]
        if not isinstance(token, str) or not any(
            abs(q - wanted) <= TIE_TOLERANCE for q in candidates.get(token, [])
        ):
            return f"the token at rank {rank + 1} is not the expected one"
        if abs(p - wanted) > PROBABILITY_TOLERANCE:
            return f"the probability at rank {rank + 1} is off by more than {PROBABILITY_TOLERANCE}"
    return ""


# --- the function's checks -----------------------------------------------------------


def check_returns_k_rows(calls: Sequence[Call], reference: Reference) -> Verdict:
    """A DataFrame with columns ``tokens`` and ``probabilities`` and exactly k rows."""
    if not calls:
        return Verdict(False, "predict_next_tokens is not defined")
    for call in calls:
        problem = _call_problem(call) or table_problem(call.table, call.k, call.hidden)
        if problem:
            return Verdict(False, f"predict_next_tokens({call.phrase!r}, {call.k}): {problem}")
    ks = ", ".join(str(call.k) for call in calls)
    return Verdict(True, f"returns a tokens/probabilities DataFrame with k rows for k = {ks}")


def check_matches_reference(calls: Sequence[Call], reference: Reference) -> Verdict:
    """Same tokens, probabilities within 1e-4, descending, on phrases the student never saw."""
    if not calls:
        return Verdict(False, "predict_next_tokens is not defined")
    wrong, first_problem = 0, ""
    for call in calls:
        problem = _call_problem(call) or table_problem(call.table, call.k, True)
        if not problem:
            problem = reference_problem(call.table, call.phrase, call.k, reference)
        if problem:
            wrong += 1
            first_problem = first_problem or problem
    if wrong:
        return Verdict(
            False,
            f"{wrong} of {len(calls)} hidden phrases give a different top-k than the reference "
            f"(one of them: {first_problem}). Check that the function uses its `phrase` and `k` "
            "parameters, the last position's logits, and softmax over the vocabulary.",
        )
    return Verdict(True, f"matches the reference on all {len(calls)} hidden phrases")


def check_returns_probabilities(calls: Sequence[Call], reference: Reference) -> Verdict:
    """Values in (0, 1] that add up to at most 1: probabilities, not logits."""
    if not calls:
        return Verdict(False, "predict_next_tokens is not defined")
    for call in calls:
        problem = _call_problem(call)
        if problem:
            return Verdict(False, f"predict_next_tokens(<phrase>, {call.k}) {problem}")
        table = call.table
        if "probabilities" not in table.columns or table.probabilities is None:
            return Verdict(False, "no 'probabilities' column to check: return a DataFrame")
        values = table.probabilities
        if any(v is None for v in values):
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


def never_written(calls: Sequence[Call]) -> str:
    """Why the function counts as not written yet ('' when it is written): every call
    made in the notebook raised (the stub raises ``NotImplementedError``) or returned
    None. Such a function earns none of the function's points."""
    if not calls or any(call.lost or call.timed_out for call in calls):
        return ""
    returned_none = [not c.error and c.table is None and c.other_type == "NoneType"
                     for c in calls]
    if not all(call.error or none for call, none in zip(calls, returned_none, strict=True)):
        return ""
    names = {call.error if call.error in _BUILTIN_ERRORS else "an exception"
             for call in calls if call.error}
    if not names:
        outcome = "it returns None"
    elif len(names) == 1 and all(call.error for call in calls):
        outcome = f"every call raised {names.pop()}"
    else:
        outcome = "every call raised an exception or returned None"
    return (f"predict_next_tokens does not return anything yet ({outcome}): the function's "
            "checks count once it returns a DataFrame")


def _same_table(a: Table, b: Table) -> bool:
    if a.columns != b.columns or a.rows != b.rows or a.tokens != b.tokens:
        return False
    if (a.probabilities is None) != (b.probabilities is None):
        return False
    for p, q in zip(a.probabilities or (), b.probabilities or (), strict=False):
        if (p is None) != (q is None) or (p is not None and abs(p - q) > PROBABILITY_TOLERANCE):
            return False
    return len(a.probabilities or ()) == len(b.probabilities or ())


def _difference(alone: Call, in_notebook: Call) -> str:
    """How a call made without the notebook's variables differs from the same call made
    in the notebook; '' when the outcome is the same (right or wrong alike)."""
    if alone.lost:
        return "stopped answering"
    if alone.timed_out:
        return "" if in_notebook.timed_out else "did not finish in time"
    if alone.error:
        if alone.error == in_notebook.error:
            return ""
        name = alone.error if alone.error in _BUILTIN_ERRORS else "an exception"
        return f"raised {name}, while in the notebook it did not"
    if in_notebook.error:
        return "returned a result, while in the notebook it raised an exception"
    if alone.table is None or in_notebook.table is None:
        if alone.table is None and in_notebook.table is None:
            return "" if alone.other_type == in_notebook.other_type else "returned another type"
        return "returned another type"
    return "" if _same_table(alone.table, in_notebook.table) else "returned a different table"


def check_works_without_notebook_globals(
    in_notebook: Sequence[Call], settings: Sequence[Sequence[Call] | None]
) -> Verdict:
    """The same result with only the allowed globals, and with the notebook's other
    variables replaced by decoys, as in the notebook itself.

    Whether that result is *right* is the other checks' business: a function that reads
    no notebook variable passes this check even when its answer is wrong, and a function
    whose answer changes without the notebook's variables fails it even when the
    notebook happens to hold the right ones.

    ``in_notebook``: the calls made in the notebook; ``settings``: the same calls with
    only ``torch``, ``tokenizer``, ``pd``, ``model`` as globals, then with decoys; None
    for a setting when the function is not a plain Python function.
    """
    descriptions = (
        "with only torch, tokenizer, pd and model defined",
        "with the notebook's other variables changed",
    )
    if not in_notebook or not settings:
        return Verdict(False, "predict_next_tokens is not defined")
    unwritten = never_written(in_notebook)
    if unwritten:
        return Verdict(False, unwritten)
    for call in in_notebook:
        if call.lost or call.timed_out:
            return Verdict(False, f"in the notebook itself, the function {_call_problem(call)}: "
                                  "there is no result to compare with")
    for description, calls in zip(descriptions, settings, strict=False):
        if calls is None:
            return Verdict(False, "predict_next_tokens is not a plain Python function")
        for alone, with_notebook in zip(calls, in_notebook, strict=False):
            difference = _difference(alone, with_notebook)
            if difference:
                return Verdict(
                    False,
                    f"called {description}, the function {difference}: it depends on a "
                    "notebook variable. Compute everything from the parameters and torch, "
                    "tokenizer, pd, model (check_global_vars names the variable).",
                )
    return Verdict(True, "gives the same result without the notebook's other variables")
