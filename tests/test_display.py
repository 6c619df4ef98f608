"""Table and plot helpers: right on pandas 2 and 3, silent, and strict about their input."""

from __future__ import annotations

import warnings

import matplotlib
import pandas as pd
import pytest

from lmlogits import plot_distribution, show_table

matplotlib.use("Agg")


@pytest.fixture
def table():
    return pd.DataFrame({"tokens": [" go", " take", ","], "probabilities": [0.06, 0.04, 0.01]})


def test_table_has_no_index_and_a_gradient(table):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning (hide_index) would fail here
        html = show_table(table).to_html()
    assert "background-color" in html
    assert "row_heading" not in html  # the index column is hidden
    assert "&#x27; go&#x27;" in html or "' go'" in html  # leading space visible
    assert "0.0600" in html


def test_plot_draws_one_bar_per_token_most_likely_on_top(table):
    ax = plot_distribution(table, title="This weekend I plan to")
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["','", "' take'", "' go'"]  # bottom to top
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == pytest.approx([0.01, 0.04, 0.06])
    assert ax.get_title() == "This weekend I plan to"


@pytest.mark.parametrize("helper", [show_table, plot_distribution])
@pytest.mark.parametrize(
    ("bad", "error", "pattern"),
    [
        ([(" go", 0.5)], TypeError, r"`df` must be a pandas DataFrame .* got list"),
        (None, TypeError, r"`df` must be a pandas DataFrame .* got NoneType"),
        (
            pd.DataFrame({"token": [" go"], "probability": [0.5]}),
            ValueError,
            r"missing \['tokens', 'probabilities'\], found \['token', 'probability'\]",
        ),
        (pd.DataFrame({"tokens": [], "probabilities": []}), ValueError, "`df` has no rows"),
        (
            pd.DataFrame({"tokens": [" go"], "probabilities": ["high"]}),
            ValueError,
            r"must hold numbers, .*'high'",
        ),
    ],
)
def test_bad_tables_are_rejected_by_name(helper, bad, error, pattern):
    with pytest.raises(error, match=pattern):
        helper(bad)


def test_plot_title_must_be_text(table):
    with pytest.raises(TypeError, match=r"`title` must be a string or None, got int: 5"):
        plot_distribution(table, title=5)


def test_plot_axes_must_be_axes(table):
    with pytest.raises(TypeError, match=r"`ax` must be a matplotlib Axes or None, got str: 'x'"):
        plot_distribution(table, ax="x")
