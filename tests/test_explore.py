"""The optional explore section: temperature reshapes the next-token distribution, bad
temperatures are refused by name, and the section draws a plain chart without widgets and
skips itself while grading."""

from __future__ import annotations

import math
import sys

import matplotlib
import pytest
import torch

from lmlogits.explore import GRADING_ENV, explore_temperature, tempered_top_k

matplotlib.use("Agg")

PHRASE = "This weekend I plan to"


@pytest.fixture(scope="module")
def logits(tiny_model, tiny_tokenizer):
    with torch.no_grad():
        return tiny_model(**tiny_tokenizer(PHRASE, return_tensors="pt")).logits[0, -1]


def _entropy(probabilities: torch.Tensor) -> float:
    return float(-(probabilities * probabilities.clamp_min(1e-30).log()).sum())


def test_temperature_one_is_the_models_own_distribution(logits, tiny_tokenizer):
    table = tempered_top_k(logits, 1.0, tiny_tokenizer, k=5)
    expected = logits.softmax(dim=-1).topk(5)
    assert table["tokens"].tolist() == [tiny_tokenizer.decode(int(i)) for i in expected.indices]
    assert table["probabilities"].tolist() == pytest.approx(expected.values.tolist(), abs=1e-6)


def test_low_temperature_sharpens_and_high_temperature_flattens(logits, tiny_tokenizer):
    tops = {t: tempered_top_k(logits, t, tiny_tokenizer, k=10) for t in (0.2, 1.0, 3.0)}
    first = {t: table["probabilities"].iloc[0] for t, table in tops.items()}
    assert first[0.2] > first[1.0] > first[3.0]
    # the order of the tokens never changes: dividing by T > 0 keeps it
    assert tops[0.2]["tokens"].tolist() == tops[3.0]["tokens"].tolist()
    entropies = [_entropy((logits / t).softmax(dim=-1)) for t in (0.2, 1.0, 3.0)]
    assert entropies == sorted(entropies)


@pytest.mark.parametrize(("temperature", "error"), [
    (0, ValueError), (-1.0, ValueError), (math.nan, ValueError), ("hot", TypeError),
    (True, TypeError), (None, TypeError),
])
def test_a_bad_temperature_is_refused_by_name(logits, tiny_tokenizer, temperature, error):
    with pytest.raises(error, match=r"`temperature` must be .*" + repr(temperature)[:3]):
        tempered_top_k(logits, temperature, tiny_tokenizer)


def test_logits_of_every_position_are_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"`logits` must be one position's scores"):
        tempered_top_k(torch.zeros(2, 50257), 1.0, tiny_tokenizer)


def test_without_ipywidgets_a_plain_chart_and_a_note(monkeypatch, tiny_model, tiny_tokenizer,
                                                      capsys):
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.delenv(GRADING_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    assert explore_temperature(PHRASE, tiny_model, tiny_tokenizer) is None
    assert "ipywidgets is not installed" in capsys.readouterr().out
    # the T = 1 chart was drawn (Agg: plt.show leaves the figure open)
    assert plt.get_fignums(), "no chart drawn"
    plt.close("all")


def test_outside_a_live_kernel_no_slider(monkeypatch, tiny_model, tiny_tokenizer):
    monkeypatch.delenv(GRADING_ENV, raising=False)
    assert explore_temperature(PHRASE, tiny_model, tiny_tokenizer) is None


def test_while_grading_the_section_skips_itself(monkeypatch, tiny_tokenizer, capsys):
    monkeypatch.setenv(GRADING_ENV, "1")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran while grading")

    assert explore_temperature(PHRASE, must_not_run, tiny_tokenizer) is None
    assert "skipped while grading" in capsys.readouterr().out


def test_the_grader_tells_every_kernel_it_is_grading():
    from lmlogits_grader import execute

    assert execute.current_settings().env[GRADING_ENV] == "1"
