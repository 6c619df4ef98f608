"""The notebook's optional, ungraded "explore" section: temperature and the next token.

Sampling picks the next token at random, weighted by its probability. A temperature
``T`` divides the logits before softmax: ``T < 1`` sharpens the distribution towards the
argmax, ``T > 1`` flattens it, and ``T = 1`` is the model's own distribution.

:func:`explore_temperature` draws the model's distribution (``T = 1``) as a plain figure,
which every render of the notebook shows, and, where ipywidgets and a live kernel are
there (Colab ships ipywidgets 7.7.1, JupyterLab has it when installed), a slider that
redraws a second chart at the chosen temperature. It only uses widgets built into
ipywidgets, so it needs no custom widget manager on Colab.
"""

from __future__ import annotations

import os

import pandas as pd

from lmlogits._validate import require_temperature

# Set by the grader in every kernel it runs: the section is skipped there, so that it
# never costs grading time (it is not graded, and it defines no notebook variable).
GRADING_ENV = "LMLOGITS_GRADING"
TEMPERATURES = (0.1, 3.0)  # the slider's range


def tempered_top_k(logits, temperature: float, tokenizer, k: int = 10) -> pd.DataFrame:
    """The ``k`` most likely next tokens after dividing the logits by ``temperature``.

    Args:
        logits: the last position's logits, a float tensor of shape ``(vocab_size,)``.
        temperature: a number above 0; 1 leaves the distribution as the model gives it.
        tokenizer: decodes token ids to text.
        k: how many tokens to keep.

    Returns:
        A DataFrame with ``k`` rows and columns ``tokens`` and ``probabilities``, most
        likely first (the same form as ``predict_next_tokens``).

    Raises:
        TypeError, ValueError: ``temperature`` is not a number above 0, or ``logits``
            is not one-dimensional.
    """
    temperature = require_temperature(temperature)
    if getattr(logits, "ndim", None) != 1:
        raise ValueError(
            f"`logits` must be one position's scores, shape (vocab_size,), got shape "
            f"{tuple(getattr(logits, 'shape', ()))}"
        )
    probabilities = (logits.float() / temperature).softmax(dim=-1)
    top = probabilities.topk(k)
    tokens = [tokenizer.decode(int(token_id)) for token_id in top.indices]
    return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})


def last_position_logits(phrase: str, model, tokenizer):
    """The model's logits for the token after ``phrase``: shape ``(vocab_size,)``."""
    import torch

    if not isinstance(phrase, str) or not phrase.strip():
        raise ValueError(f"`phrase` must be a non-empty string, got {phrase!r}")
    with torch.no_grad():
        return model(**tokenizer(phrase, return_tensors="pt")).logits[0, -1]


def _chart(table: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    from lmlogits.display import plot_distribution

    _, ax = plt.subplots(figsize=(6, 4))
    plot_distribution(table, title=title, ax=ax)
    ax.set_xlim(0, 1)  # one scale for every temperature, so that the change shows
    plt.show()


def _live_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def explore_temperature(phrase: str, model, tokenizer, k: int = 10):
    """Chart the next-token distribution of ``phrase`` at T = 1, and a temperature slider.

    Returns the slider's widget (displayed by the notebook) or ``None`` when there is no
    slider: while grading, without ipywidgets, or outside a live kernel.
    """
    if os.environ.get(GRADING_ENV):
        print("(skipped while grading: this section is not graded)")
        return None
    logits = last_position_logits(phrase, model, tokenizer)
    _chart(tempered_top_k(logits, 1.0, tokenizer, k), f"{phrase!r}, T = 1 (the model's own)")
    try:
        import ipywidgets
    except ImportError:
        print("No slider: ipywidgets is not installed (pip install ipywidgets).")
        return None
    if not _live_kernel():
        return None

    def redraw(temperature):
        table = tempered_top_k(logits, temperature, tokenizer, k)
        _chart(table, f"{phrase!r}, T = {temperature:.2f}")

    slider = ipywidgets.FloatSlider(
        value=1.0, min=TEMPERATURES[0], max=TEMPERATURES[1], step=0.05,
        description="temperature", continuous_update=False,
        style={"description_width": "initial"},  # the whole word, not "temperat..."
    )
    return ipywidgets.interactive(redraw, temperature=slider)
