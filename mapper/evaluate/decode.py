"""Next-token evaluation of causal decoders: teacher-forced logits and greedy KV-cache generation.

The LM head stays digital: logits are the last hidden state times the tied input embedding
(:attr:`compiler.families.Family.tied_lm_head`).
"""

from __future__ import annotations

import torch

__all__ = ["lm_logits", "teacher_forced", "greedy_generate"]


def lm_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Return next-token logits from the tied input embedding (the LM head stays digital)."""
    return hidden @ model.get_input_embeddings().weight.T


def teacher_forced(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Return the next-token logits at every position of ``ids`` ``(1, T)`` in one forward pass."""
    with torch.no_grad():
        h = model(input_ids=ids).last_hidden_state
    return lm_logits(model, h)


def greedy_generate(model: torch.nn.Module, ids: torch.Tensor, n_new: int,
                    return_logits: bool = False):
    """Generate ``n_new`` tokens greedily with a KV cache (one token per step after the prompt).

    Returns the token list, and with ``return_logits`` also each step's next-token logits ``(vocab,)``.
    """
    out_tokens: list[int] = []
    step_logits: list[torch.Tensor] = []
    cache = None
    cur = ids
    with torch.no_grad():
        for _ in range(n_new):
            out = model(input_ids=cur, cache=cache, use_cache=True)
            cache = out.past_key_values
            logits = lm_logits(model, out.last_hidden_state[:, -1])[0]
            nxt = int(logits.argmax(-1))
            out_tokens.append(nxt)
            step_logits.append(logits)
            cur = torch.tensor([[nxt]], dtype=ids.dtype)
    return (out_tokens, step_logits) if return_logits else out_tokens
