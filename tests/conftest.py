"""Shared fixtures: every test runs offline, on the built-in model unless it says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Set before anything imports huggingface_hub, and inherited by notebook kernels.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLOGITS_CACHE", str(REPO / ".cache" / "lmlogits"))


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
