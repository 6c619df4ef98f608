"""Argument checks shared by the public helpers; each error names the argument and value."""

from __future__ import annotations

import numbers

import pandas as pd

TABLE_COLUMNS = ("tokens", "probabilities")


def require_table(df: object, argument: str = "df") -> pd.DataFrame:
    """Check that ``df`` is a non-empty DataFrame with ``tokens`` and ``probabilities`` columns."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"`{argument}` must be a pandas DataFrame with columns 'tokens' and "
            f"'probabilities', got {type(df).__name__}: {_short_repr(df)}"
        )
    missing = [column for column in TABLE_COLUMNS if column not in df.columns]
    if missing:
        raise ValueError(
            f"`{argument}` must have columns 'tokens' and 'probabilities'; missing "
            f"{missing}, found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"`{argument}` has no rows: there is nothing to show")
    if not pd.api.types.is_numeric_dtype(df["probabilities"]):
        raise ValueError(
            f"`{argument}['probabilities']` must hold numbers, got dtype "
            f"{df['probabilities'].dtype} (first value {df['probabilities'].iloc[0]!r})"
        )
    return df


def require_k(k: object, vocab_size: int | None = None, argument: str = "k") -> int:
    """Check that ``k`` is a positive integer no larger than the vocabulary."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"`{argument}` must be a positive integer, got {type(k).__name__}: {k!r}")
    if k <= 0:
        raise ValueError(f"`{argument}` must be a strictly positive integer, got {k!r}")
    if vocab_size is not None and (
        isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral)
        or vocab_size <= 0
    ):
        raise TypeError(
            f"`vocab_size` must be a positive integer or None, got "
            f"{type(vocab_size).__name__}: {vocab_size!r}"
        )
    if vocab_size is not None and k > vocab_size:
        raise ValueError(
            f"`{argument}` must be at most the vocabulary size ({vocab_size}), got {k!r}"
        )
    return int(k)


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_temperature(temperature: object) -> float:
    """Check that ``temperature`` is a number strictly above 0.

    Examples:
        >>> require_temperature(0.5)
        0.5
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"`temperature` must be a number above 0, got {type(temperature).__name__}: "
            f"{temperature!r}"
        )
    if not temperature > 0:  # also catches NaN
        raise ValueError(f"`temperature` must be above 0, got {temperature!r}")
    return float(temperature)
