"""Shared fixtures: every test runs offline, on the built-in model unless it says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Set once, before anything imports huggingface_hub, and inherited by every notebook
# kernel and nbgrader run of the suite; tests that need other values use monkeypatch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLOGITS_CACHE", str(REPO / ".cache" / "lmlogits"))
os.environ["LMLOGITS_MODEL"] = "tiny"  # the built-in model stands in for distilgpt2
# short limits keep the endless-loop submissions quick; normal cells take < 1 s here,
# and one call of the student's function on the built-in model a few milliseconds
os.environ["LMLOGITS_CELL_TIMEOUT"] = "5"
os.environ["LMLOGITS_CHECK_SECONDS"] = "2"


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    """The built-in offline model and its tokenizer, built once per cache."""
    from lmlogits import load_model_and_tokenizer

    return load_model_and_tokenizer("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[0]


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the whole session (tests/postgres_server.py)."""
    import postgres_server

    reason = postgres_server.unavailable()
    if reason:
        pytest.skip(reason)
    with postgres_server.running_server() as url:
        yield url
