"""Show a next-token table (columns ``tokens`` and ``probabilities``) as a table or a plot."""

from __future__ import annotations

import pandas as pd

from lmlogits._validate import require_table


def visible_token(token: str) -> str:
    """Quote a token so that its leading space shows: ``" go"`` -> ``"' go'"``.

    Examples:
        >>> visible_token(" go")
        "' go'"
    """
    return repr(token)


def show_table(df: pd.DataFrame):
    """Render a tokens/probabilities table without its index, shaded by probability.

    Replaces the course's Styler call that hid the index with the old ``hide_index``
    method, deprecated in pandas 1.4-2.x and gone in pandas 3, while
    ``Styler.hide(axis="index")`` works on pandas 2 and 3 without a warning.

    Args:
        df: a DataFrame with columns ``tokens`` (str) and ``probabilities`` (float),
            one row per candidate token, as returned by ``predict_next_tokens``.

    Returns:
        A ``pandas.io.formats.style.Styler``; a notebook displays it as an HTML table.

    Raises:
        TypeError: ``df`` is not a DataFrame.
        ValueError: ``df`` lacks one of the two columns, is empty, or has
            non-numeric probabilities.
    """
    require_table(df)
    return (
        df.style.hide(axis="index")
        .format({"tokens": visible_token, "probabilities": "{:.4f}"})
        .background_gradient(subset=["probabilities"], cmap="Blues", vmin=0.0)
    )


def plot_distribution(df: pd.DataFrame, title: str | None = None, ax=None):
    """Draw a horizontal bar chart of a tokens/probabilities table, most likely on top.

    Args:
        df: a DataFrame with columns ``tokens`` and ``probabilities`` (see :func:`show_table`).
        title: the chart's title, for example the phrase; ``None`` for no title.
        ax: a matplotlib ``Axes`` to draw on; ``None`` to create a new figure.

    Returns:
        The matplotlib ``Axes`` drawn on.

    Raises:
        TypeError: ``df`` is not a DataFrame, ``title`` is not a string, or ``ax`` is
            not a matplotlib Axes.
        ValueError: see :func:`show_table`.
    """
    import matplotlib.pyplot as plt

    require_table(df)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"`title` must be a string or None, got {type(title).__name__}: {title!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(df) + 1))
    elif not hasattr(ax, "barh"):
        raise TypeError(f"`ax` must be a matplotlib Axes or None, got {type(ax).__name__}: {ax!r}")
    ordered = df.sort_values("probabilities", ascending=True)  # barh draws bottom-up
    labels = [visible_token(str(token)) for token in ordered["tokens"]]
    ax.barh(range(len(ordered)), ordered["probabilities"], color="tab:blue")
    ax.set_yticks(range(len(ordered)), labels)
    ax.set_xlabel("probability of being the next token")
    if title is not None:
        ax.set_title(title)
    return ax
