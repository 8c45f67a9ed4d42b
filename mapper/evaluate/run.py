"""End-to-end runs: a transformer whose every mapped matmul executes as CIM commands, compared with dense.

Pipeline of :func:`run` (each step is a function usable on its own):

1. :func:`prepare`: the dense Hugging Face model, its Monarch factors (projection, D2S calibration, or a d2s
   folder) and the float Monarch model (``MonarchLinear`` modules);
2. :func:`collect_activations`: the inputs of every mapped matmul on calibration text (float Monarch model);
3. :func:`compile_cim`: ``compiler.program.compile_model`` for the hardware configuration, activation scales and
   requantisation shifts from the calibration activations (:mod:`mapper.evaluate.executor`);
4. :func:`build_cim_model`: a golden-model machine (exact, or noisy: :mod:`sw_model.noise`) holding every
   weight, and a copy of the model whose mapped matmuls are :class:`~mapper.evaluate.executor.CimLinear`; embeddings,
   attention scores, softmax, norms, activations and the LM head stay digital torch;
5. metrics against the dense model: :func:`encoder_metrics` (cosine similarity of mean-pooled embeddings) or
   :func:`decoder_metrics` (top-1 next-token agreement, perplexity change, greedy KV-cache generation).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cimisa import progress as kit_progress
from cimisa.config import HwConfig, load_hw
from cimisa.errors import ConfigError, KitError, ModelError
from mapper.evaluate.executor import (
    CimExecutor,
    CimLinear,
    MatmulQuantInfo,
    QuantRefLinear,
    act_scale,
    choose_requant_shift,
    quantize_act,
)
from mapper.models import RUN_FAMILIES, ModelSpec, load_hf_model, load_model_spec, resolve_source
from sw_model.noise import NoiseParams, make_machine

__all__ = ["Prepared", "CimSetup", "prepare", "tokenize", "collect_activations", "compile_cim",
           "build_cim_model", "build_quantref_model", "mean_pool", "embed", "encoder_metrics",
           "decoder_metrics", "greedy_generate", "detokenize", "hw_for_adc", "run", "RunError", "layer_progress"]

DECODER_FAMILIES = ("gpt2", "opt", "llama")
#: Calibration tokens per matmul used to observe column-sum ranges for the ``calib`` ADC rule.
ADC_CALIB_ROWS = 512
#: Percentiles of the calibration magnitudes that set the activation scale and the requant shift (the rare
#: larger values saturate: BERT-style activations have outliers that would waste most codes).
ACT_PERCENTILE = 99.99
REQUANT_PERCENTILE = 99.99
SUPPORTED_FAMILIES = RUN_FAMILIES


class RunError(KitError):
    """An end-to-end run cannot be done with the given options."""


# ---------------------------------------------------------------------------------------------------------------
# Models and factors

@dataclass
class Prepared:
    """A dense model, its Monarch factors and the float Monarch model, plus how to tokenise text for them."""

    spec: ModelSpec
    dense: torch.nn.Module
    monarch: torch.nn.Module
    factors: dict
    tokenizer: object | None
    family: str
    nblocks: int
    calibrated: bool
    source: str

    @property
    def is_decoder(self) -> bool:
        """Whether the model is a causal decoder (next-token metrics) rather than an encoder."""
        return self.family in DECODER_FAMILIES

    @property
    def max_len(self) -> int:
        """The longest token sequence the model accepts."""
        cfg = self.dense.config
        return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 512))


def _tokenizer_for(folder: Path | None):
    if folder is None or not ((folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()):
        return None
    from transformers import AutoTokenizer  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizer files that do not load are the folder's fault
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"cannot load the tokenizer in {folder}: {text[:200]}") from None


def _d2s_calibrate(spec, model, factors, show_progress, calib_config=None):
    """Return the factors refined by the D2S calibration (:func:`mapper.d2s.calibrate.calibrate`)."""
    try:
        from mapper.d2s.calibrate import CalibConfig, calibrate  # noqa: PLC0415
    except ImportError:
        raise RunError("--calibrate needs mapper.d2s.calibrate, which this kit does not have") from None
    cfg = calib_config if calib_config is not None else CalibConfig()
    factors, _record = calibrate(spec, model, factors, cfg, show_progress=show_progress)
    return factors


_D2S_CALIBRATE = ("--calibrate refines projected factors; a d2s folder's factors are used as stored (calibrate "
                  "them with mapper d2s --calibrate)")


def _check_family(family: str, model: str) -> None:
    if family not in SUPPORTED_FAMILIES:
        raise RunError(f"end-to-end runs support the families {', '.join(SUPPORTED_FAMILIES)}, not "
                       f"{family!r} ({model})")


def prepare(model: str, nblocks: int | None = 4, calibrate: bool = False, show_progress: bool = True,
            calib_config=None) -> Prepared:
    """Load ``model`` (zoo name, checkpoint folder or d2s folder) and return it with its Monarch version.

    A d2s folder brings its own factors (``nblocks`` must be None or match). Otherwise the factors are the
    optimal projection at ``nblocks`` (None: :func:`compiler.place.default_nblocks`, as in every command), followed by the D2S calibration when ``calibrate`` is set (settings
    ``calib_config``, a :class:`mapper.d2s.calibrate.CalibConfig`; its defaults when None).
    """
    from mapper.d2s.convert import project_model, replace_with_monarch  # noqa: PLC0415
    kind, _entry, folder = resolve_source(model)
    if kind == "shape":
        raise ModelError(f"model {model!r} is shape-only (no weights); a run needs a tiny-* model, 'minilm' or "
                         f"a checkpoint folder")
    if kind == "d2s":
        from mapper.d2s.io import load_monarch_dir, load_source_spec, read_monarch_json  # noqa: PLC0415
        meta = read_monarch_json(folder)
        _check_family(meta["family"], model)
        if calibrate:
            raise RunError(_D2S_CALIBRATE)
        if nblocks is not None and int(nblocks) != int(meta["nblocks"]):
            raise RunError(f"d2s folder {folder} has nblocks {meta['nblocks']}, not {nblocks}")
        spec, factors = load_monarch_dir(folder)
        nblocks = int(meta["nblocks"])
        source = str(meta["source"])
        calibrated = bool(meta.get("calibrated"))
        src_spec = load_source_spec(spec, source)
        try:
            dense = load_hf_model(source)
        except ModelError as exc:
            raise ModelError(f"cannot load the source model of {folder}: {exc.one_line()}") from None
        monarch = replace_with_monarch(copy.deepcopy(dense), src_spec, factors).eval()
        _, _, src_folder = resolve_source(source)
        return Prepared(spec, dense, monarch, factors, _tokenizer_for(src_folder), spec.family, nblocks,
                        calibrated, str(folder))
    spec = load_model_spec(model)
    _check_family(spec.family, model)
    if nblocks is None:
        from compiler.place import default_nblocks  # noqa: PLC0415
        nblocks = default_nblocks(spec)
    nblocks = int(nblocks)
    dense = load_hf_model(model)
    factors = project_model(spec, dense, nblocks, show_progress=show_progress)
    if calibrate:
        factors = _d2s_calibrate(spec, dense, factors, show_progress, calib_config)
    monarch = replace_with_monarch(copy.deepcopy(dense), spec, factors).eval()
    return Prepared(spec, dense, monarch, factors, _tokenizer_for(folder), spec.family, nblocks, calibrate,
                    spec.source)


def tokenize(prep: Prepared, texts: list[str], max_len: int | None = None) -> dict:
    """Return ``{"input_ids", "attention_mask"}`` (padded batch) for ``texts``.

    Models with a tokenizer use it; the tiny built-in models read UTF-8 bytes modulo their vocabulary.
    """
    max_len = min(max_len or prep.max_len, prep.max_len)
    if prep.tokenizer is not None:
        enc = prep.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    vocab = int(prep.dense.config.vocab_size)
    seqs = [[b % vocab for b in t.encode("utf-8")][:max_len] or [0] for t in texts]
    n = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def detokenize(prep: Prepared, ids: list[int]) -> str:
    """Return the text of token ``ids`` (the tokenizer's, or UTF-8 bytes for the tiny built-in models)."""
    if prep.tokenizer is not None:
        return prep.tokenizer.decode(list(ids), skip_special_tokens=False)
    return bytes(int(i) % 256 for i in ids).decode("utf-8", "replace")


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    for path in ("encoder.layer", "h", "decoder.layers", "layers"):
        try:
            mods = model.get_submodule(path)
        except AttributeError:
            continue
        return list(mods)
    return []


@contextlib.contextmanager
def layer_progress(model: torch.nn.Module, desc: str, enabled: bool = True, passes: int = 1):
    """Report the step ``desc`` (:func:`cimisa.progress.stage`), advancing once per transformer layer run."""
    layers = _layers(model)
    with kit_progress.stage(desc, total=len(layers) * passes or None, unit="layer", show=enabled) as bar:
        def tick(*_):
            bar.update(1)      # returns None: a forward hook's return value would replace the layer's output

        handles = [m.register_forward_hook(tick) for m in layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


# ---------------------------------------------------------------------------------------------------------------
# Calibration activations, compilation, CIM model

def _mapped_modules(model: torch.nn.Module, names) -> dict[str, torch.nn.Module]:
    return {n: model.get_submodule(n) for n in names}


def collect_activations(prep: Prepared, texts: list[str], max_len: int = 128,
                        max_rows: int = 4096) -> dict[str, torch.Tensor]:
    """Return the inputs ``(tokens, in)`` of every factored matmul of the float Monarch model on ``texts``.

    Only real tokens (not padding) are kept, at most ``max_rows`` per matmul (an even spread).
    """
    batch = tokenize(prep, texts, max_len)
    mask = batch["attention_mask"].reshape(-1).bool()
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in _mapped_modules(prep.monarch, prep.factors).items():
        def hook(_m, args, _out, name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            if x.shape[0] == mask.numel():
                x = x[mask]
            store[name] = x
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            prep.monarch(**batch)
    finally:
        for h in handles:
            h.remove()
    for name, x in store.items():
        if x.shape[0] > max_rows:
            idx = torch.linspace(0, x.shape[0] - 1, max_rows).round().long()
            store[name] = x[idx]
    return store


@dataclass
class CimSetup:
    """A compiled model plus, per matmul, the activation scale, requant shift and output scale."""

    compiled: object
    hw: HwConfig
    infos: dict[str, MatmulQuantInfo]
    strategy: str
    compile_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _program_api():
    try:
        from compiler.program import compile_model  # noqa: PLC0415
    except ImportError as exc:
        raise RunError(f"the CIM compiler (compiler.program) is not available: {exc}") from None
    return compile_model


def _scalar(v) -> float:
    a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
    if a.size != 1:
        raise RunError(f"per-tensor weight scales expected, got shape {a.shape}")
    return float(a.reshape(()))


def _percentile_abs(x: torch.Tensor, pct: float) -> float:
    a = x.detach().abs().flatten()
    if pct >= 100 or a.numel() == 0:
        return float(a.max()) if a.numel() else 1.0
    if a.numel() > 4_000_000:
        a = a[torch.linspace(0, a.numel() - 1, 4_000_000).long()]
    return float(np.percentile(a.double().numpy(), pct))


def compile_cim(prep: Prepared, hw: HwConfig, activations: dict[str, torch.Tensor], strategy: str = "auto",
                act_percentile: float = ACT_PERCENTILE, requant_percentile: float = REQUANT_PERCENTILE,
                **compile_kw) -> CimSetup:
    """Compile the factors for ``hw`` and derive the per-matmul quantisation from the calibration activations.

    ``x_scale`` = the ``act_percentile``-th percentile of the calibration |x| over ``2**(input_bits-1)-1``; the
    requant shift is the smallest that keeps the ``requant_percentile``-th percentile of the calibration
    stage-1 magnitudes in range (:func:`~mapper.evaluate.executor.choose_requant_shift`). 100 means the maximum.
    """
    compile_model = _program_api()
    t0 = time.perf_counter()
    compiled = compile_model(prep.spec, prep.factors, hw, strategy=strategy, **compile_kw)
    ib = hw.input_bits
    scales, shifts, calib_xq = {}, {}, {}
    for name in prep.factors:
        x = activations.get(name)
        absmax = _percentile_abs(x, act_percentile) if x is not None and x.numel() else 1.0
        scales[name] = act_scale(absmax, ib)
        q = compiled.quant[name]
        xq = quantize_act(x, scales[name], ib) if x is not None else np.zeros((0, 1), np.int64)
        calib_xq[name] = xq[np.linspace(0, len(xq) - 1, min(len(xq), ADC_CALIB_ROWS)).round().astype(int)] \
            if len(xq) else xq
        if getattr(q, "W", None) is not None:
            continue
        shifts[name] = choose_requant_shift(q.R, xq, ib, requant_percentile)
    if hasattr(compiled, "with_requant_shifts"):
        compiled = compiled.with_requant_shifts(shifts)
    else:
        compiled = compile_model(prep.spec, prep.factors, hw, strategy=strategy, requant_shifts=shifts,
                                 **compile_kw)
    infos = {}
    for name in prep.factors:
        q = compiled.quant[name]
        prog = compiled.programs[name]
        if prog.depends_on:
            raise RunError(f"{name}: co-located programs (depends_on) are not supported by the batched runner")
        shift = int(prog.requant_shift)
        if getattr(q, "W", None) is not None:       # linear strategy: one dense stage, no REQUANT
            shift = 0
            y_scale = scales[name] * _scalar(q.w_scale)
        else:
            y_scale = scales[name] * _scalar(q.r_scale) * _scalar(q.l_scale) * 2.0 ** shift
        infos[name] = MatmulQuantInfo(name, scales[name], shift, y_scale)
    return CimSetup(compiled, hw, infos, strategy, time.perf_counter() - t0, {"calib_xq": calib_xq})


def hw_for_adc(hw: HwConfig, adc_bits) -> HwConfig:
    """Return ``hw`` with ADCs of ``adc_bits`` bits (``"lossless"``: wide enough for every MVM; None: as is)."""
    if adc_bits is None or (not isinstance(adc_bits, str) and adc_bits == hw.adc_bits):
        return hw
    if str(adc_bits).lower() == "lossless":
        return hw.lossless()
    try:
        bits = int(adc_bits)
    except (TypeError, ValueError):
        raise ConfigError(f"--adc-bits must be an integer or 'lossless', not {adc_bits!r}") from None
    if not 1 <= bits <= hw.lossless_adc_bits:
        raise ConfigError(f"--adc-bits must be in 1..{hw.lossless_adc_bits} for {hw.name}, not {bits}")
    return hw.replace(adc_bits=bits, name=f"{hw.name}-adc{bits}")


def build_cim_model(prep: Prepared, setup: CimSetup, adc_bits=None, noise: NoiseParams | None = None,
                    fast: bool = True, adc_rule: str = "bound") -> tuple[torch.nn.Module, CimExecutor]:
    """Return a copy of the Monarch model whose factored matmuls run on a fresh golden model, and its executor.

    ``adc_bits`` (int, ``"lossless"`` or None for the configuration's) sets the machine's ADCs and every MVM's.
    ``adc_rule`` chooses each MVM's ADC step: ``"bound"`` (no column sum the weights allow can saturate) or
    ``"calib"`` (the column-sum range seen on the calibration activations fits; see :mod:`mapper.evaluate.executor`).
    """
    hw = hw_for_adc(setup.hw, adc_bits)
    if hw.adc_bits > setup.hw.adc_bits:
        raise RunError(f"the model was compiled for {setup.hw.adc_bits}-bit ADCs; cannot run {hw.adc_bits}-bit")
    machine = make_machine(hw, noise, fast=fast)
    if adc_rule == "calib" and not fast and not (noise is not None and noise.active):
        raise RunError("the calib ADC rule needs the fast (NoisyMachine) golden model")
    executor = CimExecutor(setup.compiled, machine, adc_bits=hw.adc_bits, adc_rule=adc_rule)
    if adc_rule == "calib":
        executor.plan_adcs(executor.observe_adcs(setup.extra["calib_xq"]))
    model = copy.deepcopy(prep.monarch)
    from mapper.d2s.convert import _set_submodule  # noqa: PLC0415
    for name, (_R, _L, bias) in prep.factors.items():
        m = prep.spec.matmul(name)
        info = setup.infos[name]
        info = MatmulQuantInfo(info.name, info.x_scale, info.requant_shift, info.y_scale,
                               executor.adc_shifts.get(name, ()))
        _set_submodule(model, name, CimLinear(executor, name, m.in_features, m.out_features, info, bias,
                                              hw.input_bits))
    return model.eval(), executor


def build_quantref_model(prep: Prepared, setup: CimSetup, use_kit_reference: bool = True) -> torch.nn.Module:
    """Return the quantised Monarch model in torch: the CIM integer arithmetic without commands or ADC loss.

    With ``use_kit_reference`` the integer products come from ``compiler.quant.reference_int_product``.
    """
    from mapper.d2s.convert import _set_submodule  # noqa: PLC0415
    ref = None
    if use_kit_reference:
        try:
            from compiler.quant import reference_int_product as ref  # noqa: PLC0415
        except ImportError:
            ref = None
    model = copy.deepcopy(prep.monarch)
    ib = setup.hw.input_bits
    for name, (_R, _L, bias) in prep.factors.items():
        m = prep.spec.matmul(name)
        q = setup.compiled.quant[name]
        info = setup.infos[name]
        fn = None
        if ref is not None:
            fn = (lambda xq, q=q, s=info.requant_shift: ref(q, xq.T, s, ib).T)
        _set_submodule(model, name, QuantRefLinear(q.R, q.L, m.in_features, m.out_features, info, bias, ib,
                                                   int_product=fn))
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Metrics

def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the attention-mask-weighted mean over tokens (sentence-transformers pooling)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def _set_token_mask(model: torch.nn.Module, mask: torch.Tensor | None) -> None:
    for mod in model.modules():
        if isinstance(mod, CimLinear):
            mod.token_mask = mask


def embed(model: torch.nn.Module, batch: dict, progress: bool = False, desc: str = "") -> torch.Tensor:
    """Return mean-pooled sentence embeddings ``(B, hidden)`` (CIM layers skip padding tokens)."""
    _set_token_mask(model, batch["attention_mask"].reshape(-1).bool())
    try:
        with torch.no_grad(), layer_progress(model, desc, enabled=progress):
            out = model(**batch)
    finally:
        _set_token_mask(model, None)
    return mean_pool(out.last_hidden_state, batch["attention_mask"])


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def encoder_metrics(ref: torch.Tensor, emb: torch.Tensor) -> dict:
    """Return cosine statistics of embeddings ``emb`` against ``ref`` and the Spearman correlation of their
    pairwise-similarity matrices (how well the model ranks sentence pairs as the dense model does)."""
    cos = _cos(ref, emb)
    # torch's median of an even count is the lower middle value (of two values: the minimum); use the mean of
    # the two middle values, as numpy does.
    out = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
           "cosine_median": float(np.median(cos.detach().cpu().numpy())), "n": int(cos.numel())}
    if ref.shape[0] >= 3:
        rn = torch.nn.functional.normalize(ref.double(), dim=-1)
        en = torch.nn.functional.normalize(emb.double(), dim=-1)
        iu = torch.triu_indices(ref.shape[0], ref.shape[0], 1)
        out["pair_spearman"] = _spearman((rn @ rn.T)[iu[0], iu[1]].numpy(), (en @ en.T)[iu[0], iu[1]].numpy())
    return out


def _lm_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Return next-token logits from the tied input embedding (the LM head stays digital)."""
    return hidden @ model.get_input_embeddings().weight.T


def _teacher_forced(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        h = model(input_ids=ids).last_hidden_state
    return _lm_logits(model, h)


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
            logits = _lm_logits(model, out.last_hidden_state[:, -1])[0]
            nxt = int(logits.argmax(-1))
            out_tokens.append(nxt)
            step_logits.append(logits)
            cur = torch.tensor([[nxt]], dtype=ids.dtype)
    return (out_tokens, step_logits) if return_logits else out_tokens


def decoder_metrics(dense_logits: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor) -> dict:
    """Return top-1 next-token agreement with the dense model and the perplexity of the text under both."""
    agree = (dense_logits.argmax(-1) == logits.argmax(-1)).double().mean()

    def ppl(lg):
        if ids.shape[1] < 2:
            return float("nan")
        nll = torch.nn.functional.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]).double(),
                                                ids[:, 1:].reshape(-1))
        return float(torch.exp(nll.detach()))

    p_dense, p = ppl(dense_logits), ppl(logits)
    return {"top1_agreement": float(agree), "ppl_dense": p_dense, "ppl": p,
            "ppl_change": (p / p_dense - 1.0) if p_dense and math.isfinite(p_dense) else float("nan")}


# ---------------------------------------------------------------------------------------------------------------
# One run (the CLI)

def _cost_report(setup: CimSetup, spec: ModelSpec, hw: HwConfig) -> dict | None:
    """Return the mapper's cost report for the compiled model, if the cost model is available."""
    try:
        from compiler import cost  # noqa: PLC0415
    except ImportError:
        return None
    fn = getattr(cost, "cost_of_compiled", None)
    if fn is None:
        return None
    return fn(setup.compiled, hw, spec)


def _calibration_texts(n: int = 64) -> list[str]:
    from mapper.evaluate.textdata import calibration_sentences  # noqa: PLC0415
    sents = calibration_sentences()
    if not sents:
        return ["The quick brown fox jumps over the lazy dog."]
    step = max(1, len(sents) // n)
    return sents[::step][:n]


def run(model: str, text: str | list[str], *, nblocks: int | None = None, calibrate: bool = False,
        hw: str | HwConfig = "paper-256", strategy: str = "auto", adc_bits=None, noise: NoiseParams | None = None,
        gen_tokens: int = 8, show_progress: bool = True, calib_texts: list[str] | None = None,
        adc_rule: str = "bound") -> dict:
    """Run ``text`` through the dense, float Monarch and CIM-executed Monarch models; return the report."""
    t_start = time.perf_counter()
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise RunError("--text must be a non-empty string")
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise RunError("--text is not valid UTF-8 text") from None
    from compiler.place import STRATEGIES  # noqa: PLC0415
    if strategy not in STRATEGIES:
        raise RunError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if adc_rule not in ("bound", "calib"):
        raise RunError(f"--adc-rule must be 'bound' or 'calib', not {adc_rule!r}")
    base = load_hw(hw)
    run_hw = hw_for_adc(base, adc_bits)
    with kit_progress.stage("run: model and Monarch factors", show=show_progress):
        prep = prepare(model, nblocks, calibrate, show_progress)
    with kit_progress.stage("run: compile for the CIM arrays", show=show_progress):
        # The sentences come from an isolated interpreter (mapper.evaluate.textdata), so the order does not matter.
        calib = calib_texts if calib_texts is not None else _calibration_texts()
        acts = collect_activations(prep, calib, max_len=min(128, prep.max_len))
        setup = compile_cim(prep, run_hw, acts, strategy=strategy)
        cim_model, executor = build_cim_model(prep, setup, adc_bits=run_hw.adc_bits, noise=noise,
                                              adc_rule=adc_rule)
    t_exec = time.perf_counter()
    report: dict = {
        "model": model, "source": prep.source, "family": prep.family, "nblocks": prep.nblocks,
        "calibrated": prep.calibrated, "hw": run_hw.name, "adc_bits": run_hw.adc_bits,
        "adc_lossless": run_hw.adc_bits >= run_hw.lossless_adc_bits, "input_bits": run_hw.input_bits,
        "weight_bits": run_hw.weight_bits, "strategy": strategy, "adc_rule": adc_rule,
        "noise": (noise or NoiseParams()).to_dict(), "texts": texts,
    }
    if prep.is_decoder:
        batch = tokenize(prep, texts[:1])
        ids = batch["input_ids"]
        dl = _teacher_forced(prep.dense, ids)
        with layer_progress(cim_model, "run: CIM forward", enabled=show_progress):
            cl = _teacher_forced(cim_model, ids)
        ml = _teacher_forced(prep.monarch, ids)
        n_new = max(0, min(gen_tokens, prep.max_len - ids.shape[1]))
        gen_dense = greedy_generate(prep.dense, ids, n_new)
        with layer_progress(cim_model, "run: CIM decode", enabled=show_progress, passes=max(1, n_new)):
            gen_cim = greedy_generate(cim_model, ids, n_new)
        report["metrics"] = {
            "cim_vs_dense": decoder_metrics(dl, cl, ids),
            "monarch_float_vs_dense": decoder_metrics(dl, ml, ids),
            "tokens": int(ids.shape[1]),
            "generated_dense": gen_dense, "generated_cim": gen_cim,
            "generated_dense_text": detokenize(prep, gen_dense), "generated_cim_text": detokenize(prep, gen_cim),
            "generated_agreement": (sum(a == b for a, b in zip(gen_dense, gen_cim)) / n_new) if n_new else None,
        }
    else:
        batch = tokenize(prep, texts)
        ref = embed(prep.dense, batch)
        mon = embed(prep.monarch, batch)
        cim = embed(cim_model, batch, progress=show_progress, desc="run: CIM forward")
        report["metrics"] = {
            "cim_vs_dense": encoder_metrics(ref, cim),
            "monarch_float_vs_dense": encoder_metrics(ref, mon),
            "cim_vs_monarch_float": encoder_metrics(mon, cim),
            "tokens": int(batch["attention_mask"].sum()),
        }
    report["execution"] = {"matmul_calls": executor.calls, "token_matmuls": executor.tokens,
                           "mvm_token_commands": executor.mvms, "exec_seconds": time.perf_counter() - t_exec,
                           "total_seconds": time.perf_counter() - t_start,
                           "compile_seconds": setup.compile_seconds}
    report["matmuls"] = [dict(setup.infos[n].to_dict(), adc_shifts=list(executor.adc_shifts.get(n, ())))
                         for n in prep.factors]
    report["cost"] = _cost_report(setup, prep.spec, run_hw)
    return report


def save_report(report: dict, out: str | Path, *, force: bool = False) -> Path:
    """Write ``report`` as ``run.json`` in the folder ``out``; return the file path.

    ``out`` is a kit output folder like ``mapper build``'s: written atomically with the kit's marker file, an
    existing folder replaced as a whole only if the kit wrote it (or with ``force``).
    """
    from cimisa.fsutil import atomic_dir  # noqa: PLC0415
    with atomic_dir(out, force=force) as tmp:
        (tmp / "run.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return Path(out) / "run.json"
