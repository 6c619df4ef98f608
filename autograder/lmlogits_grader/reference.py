"""The reference answer: what ``predict_next_tokens(phrase, k)`` should compute.

Instructor side only. The hidden tests compare a student's function with this.
"""

from __future__ import annotations

import torch


def next_token_probabilities(phrase: str, tokenizer, model) -> torch.Tensor:
    """Probability of every vocabulary entry being the token after ``phrase``.

    Args:
        phrase: the text to continue.
        tokenizer: the course tokenizer (``add_prefix_space=True``).
        model: a causal LM mapping ``input_ids`` ``(1, n_tokens)`` to ``logits``
            ``(1, n_tokens, vocab_size)``.

    Returns:
        A float tensor of shape ``(vocab_size,)`` that sums to 1.
    """
    batch = tokenizer(phrase, return_tensors="pt")  # input_ids: (1, n_tokens)
    with torch.no_grad():
        logits = model(**batch).logits  # (1, n_tokens, vocab_size)
    # the last position scores the token that comes next
    return logits[0, -1, :].softmax(dim=-1)  # (vocab_size,)


def reference_top_k(phrase: str, k: int, tokenizer, model) -> list[tuple[str, float]]:
    """The ``k`` most likely next tokens and their probabilities, most likely first."""
    top = torch.topk(next_token_probabilities(phrase, tokenizer, model), k)
    return [
        (tokenizer.decode(int(token_id)), float(p))
        for token_id, p in zip(top.indices, top.values, strict=True)
    ]
