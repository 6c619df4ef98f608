"""check_next_token_table: form checks with messages that point at the mistake."""

from __future__ import annotations

import pandas as pd
import pytest

from lmlogits import check_next_token_table


def good_table():
    return pd.DataFrame({"tokens": [" go", " take", " spend"], "probabilities": [0.3, 0.2, 0.1]})


def test_good_table_passes():
    assert check_next_token_table(good_table(), k=3) is None


@pytest.mark.parametrize(
    ("table", "k", "pattern"),
    [
        ({"tokens": [" go"], "probabilities": [0.3]}, 1, "expected a pandas DataFrame, got dict"),
        (pd.DataFrame({"token": [" go"], "prob": [0.3]}), 1, "needs columns 'tokens'"),
        (good_table(), 5, "expected 5 rows .* got 3: is k used"),
        (good_table().assign(probabilities=[3.1, 2.0, -1.0]), 3, "did you apply softmax"),
        (good_table().assign(probabilities=[0.9, 0.8, 0.1]), 3, "add up to 1.8000 > 1"),
        (good_table().assign(probabilities=[0.1, 0.2, 0.3]), 3, "descending"),
        (good_table().assign(tokens=[467, 1011, 4341]), 3, "tokenizer.decode"),
    ],
)
def test_wrong_tables_fail_with_a_hint(table, k, pattern):
    with pytest.raises(AssertionError, match=pattern):
        check_next_token_table(table, k)


@pytest.mark.parametrize(
    ("k", "error", "pattern"),
    [
        (0, ValueError, "`k` must be a strictly positive integer, got 0"),
        (-2, ValueError, "got -2"),
        (2.5, TypeError, "`k` must be a positive integer, got float: 2.5"),
        ("5", TypeError, "got str: '5'"),
        (True, TypeError, "got bool: True"),
        (50258, ValueError, r"at most the vocabulary size \(50257\), got 50258"),
    ],
)
def test_bad_k_is_rejected_by_name(k, error, pattern):
    with pytest.raises(error, match=pattern):
        check_next_token_table(good_table(), k, vocab_size=50257)


@pytest.mark.parametrize("vocab_size", ["big", 0, 2.5, True])
def test_bad_vocab_size_is_rejected_by_name(vocab_size):
    with pytest.raises(TypeError, match=r"`vocab_size` must be a positive integer or None"):
        check_next_token_table(good_table(), 3, vocab_size=vocab_size)
