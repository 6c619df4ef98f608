"""Which model is loaded, and failing fast and clearly when it cannot be."""

from __future__ import annotations

import os
import socket
import threading
import time

import course_figures
import pytest

from lmlogits import COURSE_MODEL, ModelUnavailableError, model_name, resolve_model
from lmlogits.model import load_model_and_tokenizer

# Without the probe's own timeout, these would hang (or retry for ~46 s): the bound only
# proves that they do not. The actual times are in benchmarks/bench_model.py.
HANG_GUARD_SECONDS = 30


def test_default_is_distilgpt2(monkeypatch):
    monkeypatch.delenv("LMLOGITS_MODEL", raising=False)
    assert model_name() == COURSE_MODEL == "distilgpt2"


def test_environment_variable_is_honoured(monkeypatch):
    monkeypatch.setenv("LMLOGITS_MODEL", "gpt2-medium")
    assert model_name() == "gpt2-medium"


def test_explicit_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("LMLOGITS_MODEL", "gpt2-medium")
    assert model_name("distilgpt2") == "distilgpt2"


@pytest.mark.parametrize("bad", [42, ["distilgpt2"], b"distilgpt2"])
def test_name_of_wrong_type_is_rejected(bad):
    with pytest.raises(TypeError, match=r"`name` must be .* got " + repr(bad).replace("[", r"\[")):
        model_name(bad)


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_name_is_rejected(bad):
    with pytest.raises(ValueError, match="`name` must not be empty"):
        model_name(bad)


def test_empty_environment_variable_is_rejected(monkeypatch):
    monkeypatch.setenv("LMLOGITS_MODEL", "")
    with pytest.raises(ValueError, match="LMLOGITS_MODEL is set but empty"):
        model_name()


def test_local_folder_is_used_as_is(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _assert_helpful(message: str, name: str) -> None:
    assert repr(name) in message
    assert "could not be downloaded" in message
    assert "no copy of it in the local Hugging Face cache" in message
    assert "connect to the internet once" in message
    assert "LMLOGITS_MODEL" in message and "'tiny'" in message


def test_offline_and_not_cached_fails_fast_and_says_why(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as raised:
        resolve_model("distilgpt2")
    # a hang guard, not a speed test: benchmarks/bench_model.py measures the real time
    assert time.perf_counter() - start < HANG_GUARD_SECONDS
    _assert_helpful(str(raised.value), "distilgpt2")
    assert isinstance(raised.value, OSError)  # what transformers' own error would be


def test_unreachable_hub_fails_fast_without_offline_flag(empty_hub_cache, monkeypatch):
    # A server that accepts connections and never answers: the slowest kind of failure.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        start = time.perf_counter()
        with pytest.raises(ModelUnavailableError) as raised:
            resolve_model("distilgpt2")
        elapsed = time.perf_counter() - start
    finally:
        server.close()
    assert elapsed < HANG_GUARD_SECONDS, f"took {elapsed:.1f} s"
    _assert_helpful(str(raised.value), "distilgpt2")
    assert f"127.0.0.1:{port}" in str(raised.value)


def test_refused_connection_fails_fast(empty_hub_cache, monkeypatch):
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="could not be downloaded"):
        resolve_model("distilgpt2")
    assert time.perf_counter() - start < HANG_GUARD_SECONDS


def test_reachable_hub_returns_the_hub_id(empty_hub_cache, monkeypatch):
    # A stand-in hub that answers every request: the name is passed on unchanged.
    import http.server

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (the name http.server calls)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        assert resolve_model("distilgpt2") == "distilgpt2"
    finally:
        server.shutdown()


def test_never_falls_back_to_the_tiny_model(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError):
        load_model_and_tokenizer("distilgpt2")


def test_cached_hub_model_is_loaded_from_its_folder_offline(empty_hub_cache, monkeypatch):
    # Lay out a hub-style cache entry holding the tiny model, as a download would.
    import shutil

    from lmlogits.tiny import ensure_tiny_model

    snapshot = empty_hub_cache / "models--someone--cached-model" / "snapshots" / ("0" * 40)
    shutil.copytree(ensure_tiny_model(), snapshot)
    (empty_hub_cache / "models--someone--cached-model" / "refs").mkdir()
    (empty_hub_cache / "models--someone--cached-model" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_model("someone/cached-model")
    assert os.path.samefile(folder, snapshot)
    model, tokenizer = load_model_and_tokenizer("someone/cached-model")
    assert tokenizer("This weekend I plan to")["input_ids"] == [770, 5041, 314, 1410, 284]


@pytest.mark.hub
def test_distilgpt2_matches_the_course_figures():
    import torch

    try:
        model, tokenizer = load_model_and_tokenizer("distilgpt2")
    except ModelUnavailableError as error:
        pytest.skip(f"distilgpt2 is neither cached nor downloadable here: {error}")
    assert sum(p.numel() for p in model.parameters()) == course_figures.PARAMETERS
    assert len(tokenizer) == course_figures.VOCABULARY
    batch = tokenizer(course_figures.PHRASE, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == course_figures.INPUT_IDS
    with torch.no_grad():
        logits = model(**batch).logits
    assert tuple(logits.shape) == course_figures.LOGITS_SHAPE
    assert int(logits[0, -1].argmax()) == course_figures.ARGMAX_ID
    assert tokenizer.decode(course_figures.ARGMAX_ID) == course_figures.ARGMAX_TOKEN
    for phrase, expected in course_figures.TOP5.items():
        with torch.no_grad():
            last = model(**tokenizer(phrase, return_tensors="pt")).logits[0, -1]
        top = last.softmax(dim=-1).topk(5)
        tokens = [tokenizer.decode(int(i)) for i in top.indices]
        assert tokens == [token for token, _ in expected], phrase
        for got, (_, want) in zip(top.values.tolist(), expected, strict=True):
            assert got == pytest.approx(want, abs=1e-4), phrase


def test_a_missing_local_folder_is_named_not_looked_up_on_the_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelUnavailableError, match=r"there is no folder .*my-modle"):
        resolve_model("./my-modle")


def test_surrounding_spaces_are_ignored(monkeypatch):
    monkeypatch.setenv("LMLOGITS_MODEL", " tiny ")
    assert model_name() == "tiny"


def test_a_second_load_asks_nothing(monkeypatch):
    import lmlogits.model

    load_model_and_tokenizer("tiny")

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("a cached model was resolved again")

    monkeypatch.setattr(lmlogits.model, "resolve_model", must_not_be_called)
    assert load_model_and_tokenizer("tiny") is load_model_and_tokenizer(" tiny")
