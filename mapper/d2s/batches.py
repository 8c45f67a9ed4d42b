"""Calibration text as token batches, and the model forward passes the calibration runs on them.

:class:`Tokenizer` is the checkpoint's own tokenizer, or UTF-8 bytes for the tiny built-in models;
:func:`make_batches` pads (length-sorted) batches; :func:`embed` gives the mean-pooled sentence embeddings
(:func:`mapper.evaluate.metrics.mean_pool`).
"""

from __future__ import annotations

import torch

from cimisa.errors import ModelError
from compiler.families import config_int
from compiler.families import family as family_rules
from compiler.spec import ModelSpec
from mapper.evaluate.metrics import mean_pool
from mapper.models import resolve_source

__all__ = ["Tokenizer", "make_tokenizer", "make_batches", "forward", "all_hidden", "embed"]


class Tokenizer:
    """Turn sentences into ``input_ids`` lists: the checkpoint's own tokenizer, or UTF-8 bytes for tiny models."""

    def __init__(self, hf_tokenizer=None, vocab_size: int = 256, max_len: int = 64):
        self.hf = hf_tokenizer
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.pad_id = 0
        if hf_tokenizer is not None and hf_tokenizer.pad_token_id is not None:
            self.pad_id = int(hf_tokenizer.pad_token_id)

    def ids(self, sentence: str) -> list[int]:
        """Return the token ids of ``sentence`` (at most ``max_len``)."""
        if self.hf is not None:
            return list(self.hf(sentence, truncation=True, max_length=self.max_len)["input_ids"])
        return [b % self.vocab_size for b in sentence.encode("utf-8")[: self.max_len]]


def make_tokenizer(spec: ModelSpec, max_len: int = 64) -> Tokenizer:
    """Return the tokenizer of ``spec``'s checkpoint folder, or the byte-level fallback."""
    vocab = int(spec.hf_config.get("vocab_size") or 256)
    max_pos = config_int(spec.hf_config, family_rules(spec.family).seq_len_keys) or max_len
    max_len = min(max_len, max_pos)
    kind, _, folder = resolve_source(spec.source)
    if kind == "hf" and folder is not None and any((folder / f).is_file() for f in
                                                   ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        from transformers import AutoTokenizer  # noqa: PLC0415
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load the tokenizer of {folder}: {' '.join(str(exc).split())[:200]}") from None
        return Tokenizer(tok, vocab, max_len)
    return Tokenizer(None, vocab, max_len)


def make_batches(tok: Tokenizer, sentences: list[str], batch: int, sort: bool = True) -> list[dict]:
    """Return padded batches ``{"input_ids", "attention_mask", "index"}``; sorted by length to avoid padding
    waste (``index``: the sentences' positions in ``sentences``)."""
    ids = [tok.ids(s) for s in sentences]
    order = sorted(range(len(ids)), key=lambda j: (len(ids[j]), j)) if sort else list(range(len(ids)))
    batches = []
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        T = max(len(ids[j]) for j in idx)
        input_ids = torch.full((len(idx), T), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for row, j in enumerate(idx):
            input_ids[row, :len(ids[j])] = torch.tensor(ids[j])
            mask[row, :len(ids[j])] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask, "index": idx})
    return batches


def forward(model, batch, hidden: bool = False):
    """Run ``model`` on one batch (no KV cache); with ``hidden`` also return every layer's hidden states."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                 output_hidden_states=hidden)


def all_hidden(out) -> list[torch.Tensor]:
    """Return the hidden states after every transformer block (encoder, then decoder) of a forward output."""
    hs = []
    for key in ("encoder_hidden_states", "hidden_states", "decoder_hidden_states"):
        value = getattr(out, key, None)
        if value is not None:
            hs.extend(value[1:])  # the embedding output is not changed by D2S
    if not hs:
        hs = [out.last_hidden_state]
    return hs


@torch.no_grad()
def embed(model, batches: list[dict]) -> torch.Tensor:
    """Return the mean-pooled last hidden states of all sentences, in their original order."""
    n = sum(len(b["index"]) for b in batches)
    out = None
    for b in batches:
        e = mean_pool(forward(model, b).last_hidden_state, b["attention_mask"])
        if out is None:
            out = torch.zeros(n, e.shape[1])
        out[torch.tensor(b["index"])] = e.float()
    return out
