"""Helpers for the LM-logits course notebook.

Students use:

- :func:`resolve_model` / :func:`load_model_and_tokenizer`: which model to load
  (distilgpt2 unless ``LMLOGITS_MODEL`` says otherwise) and loading it;
- :func:`check_global_vars`: catches a function that reads notebook globals;
- :func:`show_table` and :func:`plot_distribution`: display a tokens/probabilities table;
- :func:`check_next_token_table`: checks the shape of a top-k table.

The answer to the exercise (a reference ``predict_next_tokens``) is deliberately not here:
it lives with the instructor's grading code under ``autograder/``.
"""

from lmlogits.checks import check_next_token_table
from lmlogits.display import plot_distribution, show_table
from lmlogits.globals_check import check_global_vars
from lmlogits.model import (
    COURSE_MODEL,
    ModelUnavailableError,
    load_model_and_tokenizer,
    model_name,
    resolve_model,
)
from lmlogits.tiny import TINY_MODEL_NAME, ensure_tiny_model

__all__ = [
    "COURSE_MODEL",
    "TINY_MODEL_NAME",
    "ModelUnavailableError",
    "check_global_vars",
    "check_next_token_table",
    "ensure_tiny_model",
    "load_model_and_tokenizer",
    "model_name",
    "plot_distribution",
    "resolve_model",
    "show_table",
]
