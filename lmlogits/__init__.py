"""Helpers for the LM-logits course notebook.

Students use:

- :func:`resolve_model` / :func:`load_model_and_tokenizer`: which model to load
  (distilgpt2 unless ``LMLOGITS_MODEL`` says otherwise) and loading it;
- :func:`check_global_vars`: catches a function that reads notebook globals;
- :func:`show_table` and :func:`plot_distribution`: display a tokens/probabilities table;
- :func:`check_next_token_table`: checks the shape of a top-k table;
- :func:`model_banner`: says which model runs, loudly when it is not distilgpt2;
- :func:`explore_temperature`: the optional temperature slider at the notebook's end.

The answer to the exercise (a reference ``predict_next_tokens``) is deliberately not here:
it lives with the instructor's grading code under ``autograder/``.

Names are imported on first use, so ``lmlogits.globals_check`` needs nothing but the
standard library (and runs on any Python from 3.10).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "COURSE_MODEL": "lmlogits.model",
    "ModelUnavailableError": "lmlogits.model",
    "load_model_and_tokenizer": "lmlogits.model",
    "model_banner": "lmlogits.model",
    "model_name": "lmlogits.model",
    "resolve_model": "lmlogits.model",
    "TINY_MODEL_NAME": "lmlogits.tiny",
    "ensure_tiny_model": "lmlogits.tiny",
    "check_global_vars": "lmlogits.globals_check",
    "check_next_token_table": "lmlogits.checks",
    "plot_distribution": "lmlogits.display",
    "show_table": "lmlogits.display",
    "explore_temperature": "lmlogits.explore",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lmlogits' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
