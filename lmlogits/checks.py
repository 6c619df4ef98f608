"""Checks a student can run on their own top-k table; they know the shape, not the answer."""

from __future__ import annotations

import math

import pandas as pd

from lmlogits._validate import require_k, require_table


def check_next_token_table(df: pd.DataFrame, k: int, vocab_size: int | None = None) -> None:
    """Check that ``df`` looks like a top-``k`` next-token table.

    A top-``k`` table has columns ``tokens`` and ``probabilities``, exactly ``k`` rows,
    probabilities in (0, 1] that add up to at most 1, sorted from most to least likely.
    This checks the form only; whether the tokens are the right ones is for the grader.

    Args:
        df: the table to check.
        k: how many rows it should have.
        vocab_size: if given, ``k`` may not exceed it.

    Raises:
        TypeError / ValueError: ``df`` is not a table or ``k`` is not a valid count.
        AssertionError: the table does not have the expected form; the message says what
            to look at.

    Examples:
        >>> table = pd.DataFrame({"tokens": [" go", " be"], "probabilities": [0.5, 0.25]})
        >>> check_next_token_table(table, k=2)
    """
    k = require_k(k, vocab_size)
    if not isinstance(df, pd.DataFrame):
        raise AssertionError(
            f"expected a pandas DataFrame, got {type(df).__name__}: build it with "
            "pd.DataFrame({'tokens': ..., 'probabilities': ...})"
        )
    missing = [c for c in ("tokens", "probabilities") if c not in df.columns]
    if missing:
        raise AssertionError(
            f"the table needs columns 'tokens' and 'probabilities'; it has {list(df.columns)}"
        )
    if len(df) != k:
        raise AssertionError(f"expected {k} rows (one per token), got {len(df)}: is k used?")
    require_table(df)
    probabilities = [float(p) for p in df["probabilities"]]
    if not all(0.0 < p <= 1.0 for p in probabilities):
        raise AssertionError(
            "probabilities must lie in (0, 1]; found "
            f"{[round(p, 4) for p in probabilities]}: did you apply softmax to the logits?"
        )
    if math.fsum(probabilities) > 1.0 + 1e-4:
        raise AssertionError(
            f"probabilities add up to {math.fsum(probabilities):.4f} > 1: softmax over the "
            "last dimension (dim=-1) makes one distribution over the vocabulary"
        )
    if any(a < b for a, b in zip(probabilities, probabilities[1:], strict=False)):
        raise AssertionError("rows must go from most to least likely (descending probabilities)")
    if not all(isinstance(t, str) for t in df["tokens"]):
        raise AssertionError(
            "tokens must be strings: decode each token id with tokenizer.decode(...)"
        )
