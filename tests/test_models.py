"""mapper.models: matmul enumeration of every built-in model, weights of tiny models, errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from cimisa.errors import ModelError
from mapper.models import ROLES, ZOO, get_weight, list_models, load_hf_model, load_model_spec

SHAPE_MODELS = ["bert-large", "bart-large", "gpt2-medium", "gpt2", "opt-1.3b", "llama-2-7b"]
TINY_MODELS = ["tiny-bert", "tiny-gpt2", "tiny-bart", "tiny-llama"]

# name -> (mapped count, {role: count}, seq_len)
EXPECTED = {
    "bert-large": (144, {"q": 24, "k": 24, "v": 24, "o": 24, "ffn_up": 24, "ffn_down": 24}, 512),
    "bart-large": (192, {"q": 24, "k": 24, "v": 24, "o": 24, "ffn_up": 24, "ffn_down": 24, "cross_q": 12,
                         "cross_k": 12, "cross_v": 12, "cross_o": 12}, 1024),
    "gpt2-medium": (96, {"qkv": 24, "o": 24, "ffn_up": 24, "ffn_down": 24}, 1024),
    "gpt2": (48, {"qkv": 12, "o": 12, "ffn_up": 12, "ffn_down": 12}, 1024),
    "opt-1.3b": (144, {"q": 24, "k": 24, "v": 24, "o": 24, "ffn_up": 24, "ffn_down": 24}, 2048),
    "llama-2-7b": (224, {"q": 32, "k": 32, "v": 32, "o": 32, "ffn_gate": 32, "ffn_up": 32, "ffn_down": 32},
                   2048),
}


def test_zoo_names():
    assert set(SHAPE_MODELS + TINY_MODELS + ["minilm"]) <= set(list_models())
    assert list(ZOO) == list_models()


@pytest.mark.parametrize("name", SHAPE_MODELS)
def test_enumeration(name):
    spec = load_model_spec(name)
    count, roles, seq_len = EXPECTED[name]
    mapped = spec.mapped()
    assert len(mapped) == count
    assert Counter(m.role for m in mapped) == roles
    assert spec.seq_len == seq_len
    assert not spec.has_weights
    assert spec.source == name
    names = [m.name for m in spec.matmuls]
    assert len(set(names)) == len(names)
    assert all(m.role in ROLES for m in spec.matmuls)
    extra = spec.mapped(include_embeddings=True)
    assert {m.role for m in extra} - {m.role for m in mapped} <= {"embed", "lm_head"}
    assert any(m.role == "embed" for m in extra)
    assert all(not m.mapped_by_default for m in extra if m.role in ("embed", "lm_head"))
    json.dumps(spec.hf_config)  # plain JSON values only


def test_bert_large_shapes():
    spec = load_model_spec("bert-large")
    m = spec.matmul("encoder.layer.0.attention.self.query")
    assert (m.layer, m.role, m.out_features, m.in_features, m.transposed) == (0, "q", 1024, 1024, False)
    assert m.stage == "encoder"
    up = spec.matmul("encoder.layer.23.intermediate.dense")
    down = spec.matmul("encoder.layer.23.output.dense")
    assert (up.out_features, up.in_features) == (4096, 1024)
    assert (down.out_features, down.in_features) == (1024, 4096)
    groups = {m.input_group for m in spec.mapped() if m.layer == 0 and m.role in ("q", "k", "v")}
    assert len(groups) == 1
    assert spec.matmul("encoder.layer.0.attention.output.dense").input_group not in groups
    assert not any(m.role == "lm_head" for m in spec.matmuls)


def test_gpt2_medium_fused_qkv():
    spec = load_model_spec("gpt2-medium")
    qkv = spec.matmul("h.0.attn.c_attn")
    assert (qkv.role, qkv.out_features, qkv.in_features, qkv.transposed) == ("qkv", 3072, 1024, True)
    assert all(m.transposed for m in spec.mapped())
    assert all(m.stage == "decoder" for m in spec.matmuls)
    head = spec.matmul("lm_head")
    assert (head.out_features, head.in_features, head.layer) == (50257, 1024, -1)


def test_llama_gate_up_down():
    spec = load_model_spec("llama-2-7b")
    gate = spec.matmul("layers.5.mlp.gate_proj")
    up = spec.matmul("layers.5.mlp.up_proj")
    down = spec.matmul("layers.5.mlp.down_proj")
    assert (gate.out_features, gate.in_features) == (11008, 4096)
    assert (up.out_features, up.in_features) == (11008, 4096)
    assert (down.out_features, down.in_features) == (4096, 11008)
    assert gate.input_group == up.input_group != down.input_group


def test_bart_cross_attention():
    spec = load_model_spec("bart-large")
    enc = [m for m in spec.mapped() if m.stage == "encoder"]
    dec = [m for m in spec.mapped() if m.stage == "decoder"]
    assert len(enc) == 12 * 6 and len(dec) == 12 * 10
    cross_kv = [m for m in dec if m.role in ("cross_k", "cross_v")]
    assert len({m.input_group for m in cross_kv}) == 1  # all read the encoder output
    assert spec.matmul("decoder.layers.3.encoder_attn.q_proj").role == "cross_q"
    # order: encoder blocks first, then decoder blocks
    stages = [m.stage for m in spec.mapped()]
    assert stages == sorted(stages, key=lambda s: s != "encoder")


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_weights_deterministic(name):
    spec = load_model_spec(name)
    assert spec.has_weights and spec.seq_len == 64
    a, b = load_hf_model(name), load_hf_model(name)
    for m in spec.matmuls:
        wa, wb = get_weight(a, m), get_weight(b, m)
        assert wa.shape == (m.out_features, m.in_features) and wa.dtype == torch.float32
        assert torch.equal(wa, wb)
    hidden = [m for m in spec.mapped() if m.role in ("q", "qkv")][0]
    assert hidden.in_features == 64


def test_tiny_gpt2_conv1d_transposed_back():
    model = load_hf_model("tiny-gpt2")
    spec = load_model_spec("tiny-gpt2")
    m = spec.matmul("h.0.attn.c_attn")
    w = get_weight(model, m)
    x = torch.randn(3, 64)
    assert torch.allclose(model.get_submodule(m.name)(x), x @ w.t() + model.h[0].attn.c_attn.bias, atol=1e-6)


def test_shape_only_has_no_weights():
    with pytest.raises(ModelError, match="shape-only"):
        load_hf_model("bert-large")


def test_unknown_and_bad_folders(tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        load_model_spec("bert-gigantic")
    with pytest.raises(ModelError, match="does not exist"):
        load_model_spec(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="config.json"):
        load_model_spec(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError):
        load_model_spec(str(tmp_path))


def test_local_checkpoint_folder(tmp_path):
    model = load_hf_model("tiny-bert")
    model.save_pretrained(tmp_path / "ckpt")
    spec = load_model_spec(str(tmp_path / "ckpt"))
    assert spec.has_weights and spec.family == "bert" and spec.source == str((tmp_path / "ckpt").resolve())
    loaded = load_hf_model(str(tmp_path / "ckpt"))
    m = spec.mapped()[0]
    assert torch.equal(get_weight(loaded, m), get_weight(model, m))
    # a truncated weights file is reported, not a traceback
    st = next((tmp_path / "ckpt").glob("*.safetensors"))
    st.write_bytes(st.read_bytes()[:100])
    with pytest.raises(ModelError, match="cannot load weights"):
        load_hf_model(str(tmp_path / "ckpt"))


def _edit_checkpoint(folder, edit):
    from safetensors.torch import load_file, save_file
    st = next(folder.glob("*.safetensors"))
    tensors = load_file(str(st))
    edit(tensors)
    save_file(tensors, str(st), metadata={"format": "pt"})


@pytest.fixture
def tiny_checkpoint(tmp_path):
    load_hf_model("tiny-bert").save_pretrained(tmp_path / "ck")
    return tmp_path / "ck"


def test_checkpoint_missing_tensors_are_refused(tiny_checkpoint):
    q = "encoder.layer.1.attention.self.query.weight"
    _edit_checkpoint(tiny_checkpoint, lambda t: (t.pop(q), t.pop("embeddings.LayerNorm.weight")))
    with pytest.raises(ModelError, match=r"lacks 2 tensors the bert model needs: embeddings.LayerNorm.weight, "
                                         + q.replace(".", r"\.")):
        load_hf_model(str(tiny_checkpoint))


def test_checkpoint_unrelated_tensors_are_refused(tiny_checkpoint):
    _edit_checkpoint(tiny_checkpoint, lambda t: t.update({f"other.{k}": t.pop(k) for k in list(t)}))
    with pytest.raises(ModelError, match=r"lacks \d+ tensors .*\(and \d+ more\)"):
        load_hf_model(str(tiny_checkpoint))


def test_checkpoint_shape_and_nan(tiny_checkpoint, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    k = "encoder.layer.0.output.dense.weight"
    _edit_checkpoint(bad, lambda t: t.update({k: torch.zeros(64, 64)}))
    with pytest.raises(ModelError, match=rf"wrong shape: {k} \[64, 64\] \(config.json needs \[64, 128\]\)"):
        load_model_spec(str(bad))          # the header check needs no weights
    _edit_checkpoint(tiny_checkpoint, lambda t: t[k].view(-1).__setitem__(3, float("inf")))
    load_model_spec(str(tiny_checkpoint))
    with pytest.raises(ModelError, match=f"NaN or infinite values: {k}"):
        load_hf_model(str(tiny_checkpoint))


def test_checkpoint_without_pooler_loads_reproducibly(tiny_checkpoint):
    """BERT's pooler is never used: a checkpoint may lack it, and what stands in for it is seeded."""
    _edit_checkpoint(tiny_checkpoint, lambda t: [t.pop(k) for k in list(t) if k.startswith("pooler.")])
    a, b = load_hf_model(str(tiny_checkpoint)), load_hf_model(str(tiny_checkpoint))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("text,pattern", [
    (b'{"model_type": "bert"', "not valid JSON"),
    (b'\xff{"model_type": "bert"}', "not UTF-8"),
    (b'"bert"', "JSON object"),
    (b'{"model_type": "mamba"}', "unsupported model_type 'mamba'"),
    (b'{"hidden_size": 8}', "no model_type"),
])
def test_bad_config_json(tiny_checkpoint, text, pattern):
    (tiny_checkpoint / "config.json").write_bytes(text)
    with pytest.raises(ModelError, match=pattern):
        load_model_spec(str(tiny_checkpoint))


def test_source_family(tiny_checkpoint):
    from mapper.models import source_family
    assert source_family("tiny-gpt2") == ("tiny", "gpt2")
    assert source_family("minilm") == ("hf", "bert")
    assert source_family(str(tiny_checkpoint)) == ("hf", "bert")


def test_family_rules_are_defined_once_and_agree_with_the_spec_names():
    """compiler.families is the one place of family facts; compiler.spec's name lists must agree with it."""
    import re

    from compiler import families, spec
    assert families.FAMILIES == spec.FAMILIES and families.RUN_FAMILIES == spec.RUN_FAMILIES
    for fam in families.FAMILY.values():
        assert {r.role for r in fam.rules} <= set(spec.ROLES)
        for r in fam.rules:
            assert "layer" in re.compile(r.pattern).groupindex
        assert families.family_of_model_type(fam.model_type) is fam
    assert families.family_of_model_type("t5") is None
    bart, bert = families.family("bart"), families.family("bert")
    assert not bart.in_decode("encoder", {"q"}) and not bart.in_decode("decoder", {"cross_k", "cross_v"})
    assert bart.in_decode("decoder", {"cross_q"}) and bert.in_decode("encoder", {"q", "k", "v"})
    assert families.config_int({"n_embd": 0, "hidden_size": 64}, ("n_embd", "hidden_size")) == 64
