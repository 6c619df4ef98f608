"""Find and load the course model, and fail fast and clearly when it is not available.

The course model is distilgpt2 from the Hugging Face hub. Which model a notebook uses
is decided in one place, :func:`resolve_model`:

1. an explicit ``name`` argument, else
2. the ``LMLOGITS_MODEL`` environment variable, else
3. ``"distilgpt2"``.

The name may be a hub id, a local folder, or ``"tiny"`` for the built-in offline model
(see :mod:`lmlogits.tiny`). Nothing here ever falls back to another model: when the
requested one cannot be had, the error says so and says how to fix it.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from lmlogits.tiny import TINY_MODEL_NAME, ensure_tiny_model

COURSE_MODEL = "distilgpt2"
MODEL_ENV_VAR = "LMLOGITS_MODEL"
# How long to wait for the hub to answer before declaring it unreachable.
_HUB_PROBE_SECONDS = 3.0
_TRUE_VALUES = {"1", "true", "yes", "on"}

_loaded: dict[str, tuple] = {}


class ModelUnavailableError(OSError):
    """The requested model is neither downloadable nor in the local cache."""


def model_name(name: str | None = None) -> str:
    """Return the requested model name: ``name``, else ``$LMLOGITS_MODEL``, else distilgpt2.

    Args:
        name: a hub id (``"distilgpt2"``), a local folder, or ``"tiny"``; ``None`` to use
            the environment variable or the course default.

    Returns:
        The name as requested, not yet checked or downloaded.

    Raises:
        TypeError: ``name`` is neither ``None`` nor a string.
        ValueError: ``name`` (or the environment variable) is empty.

    Examples:
        >>> model_name("gpt2")
        'gpt2'
    """
    if name is not None and not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"`name` must be a model name or folder (str), got {name!r}")
    if name is None:
        name = os.environ.get(MODEL_ENV_VAR)
        if name is not None and not name.strip():
            raise ValueError(
                f"{MODEL_ENV_VAR} is set but empty ({name!r}): unset it or name a model"
            )
        if name is None:
            return COURSE_MODEL
    name = os.fspath(name)
    if not name.strip():
        raise ValueError(f"`name` must not be empty, got {name!r}")
    return name.strip()


def resolve_model(name: str | None = None) -> str:
    """Return what to pass to ``from_pretrained`` for the course model, checking it exists.

    - ``"tiny"``: builds the built-in offline model if needed and returns its folder.
    - an existing local folder: returned as it is.
    - a hub id: returned as it is when the hub answers; when the hub does not answer but
      the model is in the local Hugging Face cache, the cached folder is returned so that
      loading works offline without the hub client's retries; otherwise
      :class:`ModelUnavailableError` within a few seconds.

    Args:
        name: see :func:`model_name`.

    Returns:
        A hub id or a local folder path, as a string.

    Raises:
        ModelUnavailableError: the model can be neither downloaded nor found in the cache.
    """
    name = model_name(name)
    if name == TINY_MODEL_NAME:
        return str(ensure_tiny_model())
    folder = Path(name).expanduser()
    if folder.is_dir():
        return str(folder)
    if _looks_like_a_path(name):
        raise ModelUnavailableError(
            f"Cannot load the model {name!r}: there is no folder {str(folder.resolve())!r}. "
            f"Check the path, or set {MODEL_ENV_VAR} to a model folder, to a hub id such "
            f"as 'distilgpt2', or to {TINY_MODEL_NAME!r}."
        )
    cached = _cached_snapshot(name)
    if _hub_offline():
        if cached is not None:
            return cached
        raise ModelUnavailableError(_unavailable_message(name, "HF_HUB_OFFLINE is set"))
    reachable, reason = _hub_answers(name)
    if reachable:
        return name
    if cached is not None:
        return cached
    raise ModelUnavailableError(_unavailable_message(name, reason))


# The hub ids under which distilgpt2 is published: its figures are the notebook's.
COURSE_MODEL_IDS = frozenset({COURSE_MODEL, "distilbert/distilgpt2"})


def model_banner(name: str | None = None) -> str:
    """One line saying which model the notebook runs, and a warning banner if not distilgpt2.

    The notebook's expected figures are distilgpt2's. The built-in offline model (which
    the course's tests use) was trained on text holding the course's own phrases, so its
    top tokens can look like distilgpt2's: a student must never take them for those.

    Args:
        name: as for :func:`model_name` (``None``: ``$LMLOGITS_MODEL``, else distilgpt2).

    Returns:
        ``"Model: distilgpt2 (...)"`` for the course model; otherwise a banner of several
        lines that starts with ``"NOT distilgpt2"`` once framed.

    Examples:
        >>> model_banner("distilgpt2").startswith("Model: distilgpt2")
        True
        >>> "NOT distilgpt2" in model_banner("tiny")
        True
    """
    requested = model_name(name)
    if requested in COURSE_MODEL_IDS:
        return (
            f"Model: {requested} (the course model: your figures should match the "
            "expected ones written in this notebook)"
        )
    if requested == TINY_MODEL_NAME:
        what = "the course's built-in offline model (LMLOGITS_MODEL=tiny)"
    else:
        what = f"{requested!r} (from LMLOGITS_MODEL or the name you gave)"
    rule = "!" * 78
    return "\n".join([
        rule,
        "NOT distilgpt2: this notebook is running " + what + ".",
        "Its predictions differ from the distilgpt2 figures written in this notebook.",
        "Unset LMLOGITS_MODEL to use distilgpt2.",
        rule,
    ])


def load_model_and_tokenizer(name: str | None = None):
    """Load the course model and its tokenizer, once per process.

    The tokenizer is loaded with ``add_prefix_space=True`` (so a phrase's first word is
    tokenized like any other word, ``" This"``) and its pad token set to the end-of-text
    token, as in the course; the model is put in eval mode. A second call with the same
    name returns the same objects at no cost.

    Args:
        name: see :func:`model_name`.

    Returns:
        ``(model, tokenizer)``: a ``transformers`` causal LM whose forward pass maps
        ``input_ids`` of shape ``(batch, n_tokens)`` to ``logits`` of shape
        ``(batch, n_tokens, vocab_size)``, and its tokenizer.

    Raises:
        ModelUnavailableError: see :func:`resolve_model`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    requested = model_name(name)
    if requested not in _loaded:  # a second call asks neither the hub nor the disk
        source = resolve_model(requested)
        tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True)
        tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(source)
        model.eval()
        _loaded[requested] = (model, tokenizer)
    return _loaded[requested]


def _looks_like_a_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _cached_snapshot(repo_id: str) -> str | None:
    """The folder of a complete cached copy of ``repo_id``, or None."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: either way, no cached copy
        return None
    has_weights = any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))
    has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()
    if (folder / "config.json").is_file() and has_weights and has_tokenizer:
        return str(folder)
    return None


def _hub_answers(repo_id: str) -> tuple[bool, str]:
    """Ask the hub for the model's config, giving up after a few seconds.

    Returns ``(True, "")`` when the hub answered (even with an error status: then
    ``from_pretrained`` reports the problem itself), else ``(False, reason)``.
    """
    url = f"{_hub_endpoint()}/{repo_id}/resolve/main/config.json"
    outcome: dict[str, object] = {}

    def probe() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=_HUB_PROBE_SECONDS):
                outcome["ok"] = True
        except urllib.error.HTTPError:
            outcome["ok"] = True  # the hub is there; let transformers explain the status
        except Exception as error:  # DNS failure, refused, timed out, TLS...
            outcome["reason"] = f"{type(error).__name__}: {error}"

    # a thread, because name resolution has no timeout of its own
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_HUB_PROBE_SECONDS + 0.5)
    if outcome.get("ok"):
        return True, ""
    return False, str(outcome.get("reason", f"no answer within {_HUB_PROBE_SECONDS:.0f} s"))


def _unavailable_message(name: str, reason: str) -> str:
    return (
        f"Cannot load the model {name!r}: it could not be downloaded from "
        f"{_hub_endpoint()} ({reason}) and there is no copy of it in the local "
        "Hugging Face cache.\n"
        "Two ways to fix this:\n"
        "  1. connect to the internet once and run this again: the model is then cached "
        "and works offline afterwards;\n"
        f"  2. set {MODEL_ENV_VAR} to a local model folder, or to {TINY_MODEL_NAME!r} for "
        "the small built-in offline model (its predictions are not distilgpt2's)."
    )
