"""Model families, defined once (plain data, no torch): everything the kit knows about BERT, GPT-2, BART, OPT, Llama.

One :class:`Family` per supported Hugging Face ``model_type`` says

* which modules of the base model (``AutoModel``) are weight matmuls, with their role and input group
  (:class:`MatmulRule`), the token embedding's name, and whether a (tied) LM head follows;
* the model's kind (:class:`Kind`: encoder, decoder, encoder-decoder), whether attention is causal, which
  matmuls run for every generated token (:meth:`Family.in_decode`) and where the transformer blocks are
  (:class:`BlockList`, forward order);
* the ``config.json`` keys of its layer count, width, heads and sequence length;
* whether ``mapper run`` executes it end to end, and how (:class:`RunMode`).

Every part of the kit that depends on the family (model import, D2S calibration, end-to-end runs, the cost
model) reads it from here; nothing else branches on a family name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Kind", "RunMode", "MatmulRule", "BlockList", "Family", "FAMILY", "FAMILIES", "RUN_FAMILIES",
           "MODEL_TYPES", "family", "family_of_model_type", "config_int", "generic_family"]


class Kind(StrEnum):
    """What a family's transformer stack is."""

    ENCODER = "encoder"                   # bidirectional encoder (sentence embeddings)
    DECODER = "decoder"                   # causal decoder (next-token prediction)
    ENCODER_DECODER = "encoder-decoder"   # encoder, then a causal decoder with cross-attention


class RunMode(StrEnum):
    """How ``mapper run`` compares a CIM-executed model with the dense one."""

    POOLED = "pooled"           # mean-pooled sentence embeddings: cosine, pairwise Spearman
    NEXT_TOKEN = "next-token"   # next-token agreement, perplexity, greedy KV-cache generation


@dataclass(frozen=True)
class MatmulRule:
    """One weight matmul pattern: ``pattern`` (a regex over the module name, matched whole) with the group
    ``layer`` (block index) and, for encoder-decoders, ``stage``; the matmul's ``role``; ``group`` the input-group
    suffix (``<stage>.<layer>.<group>``), or ``@name`` for one input group shared across layers."""

    pattern: str
    role: str
    group: str


@dataclass(frozen=True)
class BlockList:
    """The transformer blocks of one stage: the module path of their ``ModuleList``."""

    stage: str
    path: str


@dataclass(frozen=True)
class Family:
    """Everything the kit knows about one model family (see the module docstring)."""

    name: str
    model_type: str
    kind: Kind
    causal: bool
    rules: tuple[MatmulRule, ...]
    blocks: tuple[BlockList, ...]
    embed_name: str
    lm_head: bool                 # decoders get a synthetic ``lm_head`` matmul (vocab x hidden)
    tied_lm_head: bool            # ... equal to the input embedding (Llama-2's real head is untied, same shape)
    layer_keys: tuple[str, ...]   # config.json: transformer blocks (summed over the keys)
    hidden_keys: tuple[str, ...]  # config.json: model width
    heads_keys: tuple[str, ...]   # config.json: attention heads
    seq_len_keys: tuple[str, ...]  # config.json: the longest sequence
    run: RunMode | None = None    # how ``mapper run`` executes it (None: not supported)
    unused_prefixes: tuple[str, ...] = ()   # parameters no part of the kit uses (may be absent from a checkpoint)
    prefill_only_stages: frozenset[str] = frozenset()   # stages that run once per sequence, not per token
    prefill_only_roles: frozenset[str] = frozenset()    # phases made of these roles only run once per sequence
    encoder_final_norm: str | None = None   # module applied to the last encoder block's output, if present

    @property
    def default_stage(self) -> str:
        """The stage of matmuls whose rule names none, and of the token embedding."""
        return "decoder" if self.kind is Kind.DECODER else "encoder"

    @property
    def decoder_reads_encoder(self) -> bool:
        """Whether decoder blocks cross-attend to the encoder output (encoder-decoders)."""
        return self.kind is Kind.ENCODER_DECODER

    def in_decode(self, stage: str, roles: frozenset[str] | set[str]) -> bool:
        """Whether a phase (matmuls of ``roles`` in ``stage``) runs for every generated token."""
        return not (stage in self.prefill_only_stages or roles <= self.prefill_only_roles)


_QKV = (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"))


def _attn(prefix: str, o_name: str) -> tuple[MatmulRule, ...]:
    return (*(MatmulRule(rf"{prefix}\.self_attn\.{mod}", role, "attn_in") for role, mod in _QKV),
            MatmulRule(rf"{prefix}\.self_attn\.{o_name}", "o", "attn_ctx"))


_BERT_L = r"encoder\.layer\.(?P<layer>\d+)"
_GPT2_L = r"h\.(?P<layer>\d+)"
_BART_L = r"(?P<stage>encoder|decoder)\.layers\.(?P<layer>\d+)"
_BART_D = r"(?P<stage>decoder)\.layers\.(?P<layer>\d+)"
_OPT_L = r"decoder\.layers\.(?P<layer>\d+)"
_LLAMA_L = r"layers\.(?P<layer>\d+)"

_FAMILIES = (
    Family(
        name="bert", model_type="bert", kind=Kind.ENCODER, causal=False,
        rules=(MatmulRule(rf"{_BERT_L}\.attention\.self\.query", "q", "attn_in"),
               MatmulRule(rf"{_BERT_L}\.attention\.self\.key", "k", "attn_in"),
               MatmulRule(rf"{_BERT_L}\.attention\.self\.value", "v", "attn_in"),
               MatmulRule(rf"{_BERT_L}\.attention\.output\.dense", "o", "attn_ctx"),
               MatmulRule(rf"{_BERT_L}\.intermediate\.dense", "ffn_up", "ffn_in"),
               MatmulRule(rf"{_BERT_L}\.output\.dense", "ffn_down", "ffn_hidden")),
        blocks=(BlockList("encoder", "encoder.layer"),), embed_name="embeddings.word_embeddings",
        lm_head=False, tied_lm_head=False, layer_keys=("num_hidden_layers",), hidden_keys=("hidden_size",),
        heads_keys=("num_attention_heads",), seq_len_keys=("max_position_embeddings",), run=RunMode.POOLED,
        unused_prefixes=("pooler.",)),   # runs mean-pool the last hidden state; BERT's pooler is never used
    Family(
        name="gpt2", model_type="gpt2", kind=Kind.DECODER, causal=True,
        rules=(MatmulRule(rf"{_GPT2_L}\.attn\.c_attn", "qkv", "attn_in"),
               MatmulRule(rf"{_GPT2_L}\.attn\.c_proj", "o", "attn_ctx"),
               MatmulRule(rf"{_GPT2_L}\.mlp\.c_fc", "ffn_up", "ffn_in"),
               MatmulRule(rf"{_GPT2_L}\.mlp\.c_proj", "ffn_down", "ffn_hidden")),
        blocks=(BlockList("decoder", "h"),), embed_name="wte", lm_head=True, tied_lm_head=True,
        layer_keys=("n_layer",), hidden_keys=("n_embd",), heads_keys=("n_head",), seq_len_keys=("n_positions",),
        run=RunMode.NEXT_TOKEN),
    Family(
        name="bart", model_type="bart", kind=Kind.ENCODER_DECODER, causal=True,
        rules=(*_attn(_BART_L, "out_proj"),
               MatmulRule(rf"{_BART_D}\.encoder_attn\.q_proj", "cross_q", "cross_in"),
               MatmulRule(rf"{_BART_D}\.encoder_attn\.k_proj", "cross_k", "@encoder.output"),
               MatmulRule(rf"{_BART_D}\.encoder_attn\.v_proj", "cross_v", "@encoder.output"),
               MatmulRule(rf"{_BART_D}\.encoder_attn\.out_proj", "cross_o", "cross_ctx"),
               MatmulRule(rf"{_BART_L}\.fc1", "ffn_up", "ffn_in"),
               MatmulRule(rf"{_BART_L}\.fc2", "ffn_down", "ffn_hidden")),
        blocks=(BlockList("encoder", "encoder.layers"), BlockList("decoder", "decoder.layers")),
        embed_name="shared", lm_head=True, tied_lm_head=True, layer_keys=("encoder_layers", "decoder_layers"),
        hidden_keys=("d_model",), heads_keys=("encoder_attention_heads",), seq_len_keys=("max_position_embeddings",),
        # decoding runs the decoder only: the encoder and the cross-attention K/V run once, in prefill
        prefill_only_stages=frozenset({"encoder"}), prefill_only_roles=frozenset({"cross_k", "cross_v"}),
        encoder_final_norm="encoder.layer_norm"),
    Family(
        name="opt", model_type="opt", kind=Kind.DECODER, causal=True,
        rules=(*_attn(_OPT_L, "out_proj"),
               MatmulRule(rf"{_OPT_L}\.fc1", "ffn_up", "ffn_in"),
               MatmulRule(rf"{_OPT_L}\.fc2", "ffn_down", "ffn_hidden")),
        blocks=(BlockList("decoder", "decoder.layers"),), embed_name="decoder.embed_tokens", lm_head=True,
        tied_lm_head=True, layer_keys=("num_hidden_layers",), hidden_keys=("hidden_size",),
        heads_keys=("num_attention_heads",), seq_len_keys=("max_position_embeddings",)),
    Family(
        name="llama", model_type="llama", kind=Kind.DECODER, causal=True,
        rules=(*_attn(_LLAMA_L, "o_proj"),
               MatmulRule(rf"{_LLAMA_L}\.mlp\.gate_proj", "ffn_gate", "ffn_in"),
               MatmulRule(rf"{_LLAMA_L}\.mlp\.up_proj", "ffn_up", "ffn_in"),
               MatmulRule(rf"{_LLAMA_L}\.mlp\.down_proj", "ffn_down", "ffn_hidden")),
        blocks=(BlockList("decoder", "layers"),), embed_name="embed_tokens", lm_head=True, tied_lm_head=False,
        layer_keys=("num_hidden_layers",), hidden_keys=("hidden_size",), heads_keys=("num_attention_heads",),
        seq_len_keys=("max_position_embeddings",)),
)

#: Every family by name, in the kit's order.
FAMILY: dict[str, Family] = {f.name: f for f in _FAMILIES}
FAMILIES: tuple[str, ...] = tuple(FAMILY)
#: The families ``mapper run`` executes end to end (mean-pooled encoder embeddings, or next-token decoding).
RUN_FAMILIES: tuple[str, ...] = tuple(f.name for f in _FAMILIES if f.run is not None)
#: Hugging Face ``model_type`` -> family name.
MODEL_TYPES: dict[str, str] = {f.model_type: f.name for f in _FAMILIES}


def family(name: str) -> Family:
    """Return the :class:`Family` called ``name`` (KeyError for an unknown one: families are checked on load)."""
    return FAMILY[name]


def family_of_model_type(model_type) -> Family | None:
    """Return the family of a Hugging Face ``model_type``, None if the kit does not support it."""
    name = MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
    return FAMILY[name] if name is not None else None


def generic_family(stages: set[str] | frozenset[str]) -> Family:
    """The family assumed when only the placed matmuls are known: an encoder if every matmul is in the encoder
    stage, otherwise a plain causal decoder (every phase runs in decode)."""
    return FAMILY["bert"] if set(stages) == {"encoder"} else FAMILY["gpt2"]


def config_int(config, keys: tuple[str, ...]) -> int | None:
    """Return the first of ``keys`` set to a positive integer in ``config`` (a dict or a config object)."""
    for key in keys:
        value = config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
