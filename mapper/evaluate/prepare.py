"""Step 1 of an end-to-end run: the dense model, its Monarch factors and the float Monarch model, and text in
and out of them (tokenisation).

The factors are the optimal projection (optionally refined by the D2S calibration, :mod:`mapper.d2s.calibrate`)
or those stored in a D2S folder. Only the families ``mapper run`` supports are accepted
(:data:`compiler.families.RUN_FAMILIES`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from cimisa.errors import KitError, ModelError
from compiler.families import RUN_FAMILIES, Family, RunMode, config_int
from compiler.families import family as family_rules
from compiler.place import default_nblocks
from compiler.spec import ModelSpec
from mapper.d2s.calibrate import CalibConfig
from mapper.d2s.calibrate import calibrate as calibrate_factors
from mapper.d2s.convert import project_model
from mapper.d2s.io import load_monarch_dir, read_monarch_json
from mapper.d2s.swap import replace_with_monarch
from mapper.evaluate.textdata import calibration_sentences
from mapper.models import load_hf_model, load_model_spec, load_source_spec, resolve_source
from mapper.models.hf import quiet_transformers

__all__ = ["RunError", "Prepared", "prepare", "tokenize", "detokenize", "calibration_texts", "check_family",
           "D2S_CALIBRATE"]

#: Why ``--calibrate`` is refused for a D2S folder (also printed by ``mapper run``'s early check).
D2S_CALIBRATE = ("--calibrate refines projected factors; a d2s folder's factors are used as stored (calibrate "
                 "them with mapper d2s --calibrate)")


class RunError(KitError):
    """An end-to-end run cannot be done with the given options."""


@dataclass(frozen=True)
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
    def rules(self) -> Family:
        """The model's :class:`~compiler.families.Family`."""
        return family_rules(self.family)

    @property
    def is_decoder(self) -> bool:
        """Whether the run compares next tokens (causal decoders) rather than pooled embeddings (encoders)."""
        return self.rules.run is RunMode.NEXT_TOKEN

    @property
    def max_len(self) -> int:
        """The longest token sequence the model accepts."""
        return config_int(self.dense.config, self.rules.seq_len_keys) or 512


def check_family(family: str, model: str) -> None:
    """Raise :class:`RunError` unless ``mapper run`` executes the family."""
    if family not in RUN_FAMILIES:
        raise RunError(f"end-to-end runs support the families {', '.join(RUN_FAMILIES)}, not "
                       f"{family!r} ({model})")


def _tokenizer_for(folder: Path | None):
    if folder is None or not ((folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()):
        return None
    from transformers import AutoTokenizer  # noqa: PLC0415
    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizer files that do not load are the folder's fault
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"cannot load the tokenizer in {folder}: {text[:200]}") from None


def _prepare_d2s(model: str, folder: Path, nblocks: int | None, calibrated: bool) -> Prepared:
    meta = read_monarch_json(folder)
    check_family(meta["family"], model)
    if calibrated:
        raise RunError(D2S_CALIBRATE)
    if nblocks is not None and int(nblocks) != int(meta["nblocks"]):
        raise RunError(f"d2s folder {folder} has nblocks {meta['nblocks']}, not {nblocks}")
    spec, factors = load_monarch_dir(folder)
    source = str(meta["source"])
    src_spec = load_source_spec(spec, source)
    try:
        dense = load_hf_model(source)
    except ModelError as exc:
        raise ModelError(f"cannot load the source model of {folder}: {exc.one_line()}") from None
    monarch = replace_with_monarch(copy.deepcopy(dense), src_spec, factors).eval()
    _, _, src_folder = resolve_source(source)
    return Prepared(spec, dense, monarch, factors, _tokenizer_for(src_folder), spec.family, int(meta["nblocks"]),
                    bool(meta.get("calibrated")), str(folder))


def prepare(model: str, nblocks: int | None = 4, calibrate: bool = False, show_progress: bool = True,
            calib_config: CalibConfig | None = None) -> Prepared:
    """Load ``model`` (zoo name, checkpoint folder or d2s folder) and return it with its Monarch version.

    A d2s folder brings its own factors (``nblocks`` must be None or match). Otherwise the factors are the
    optimal projection at ``nblocks`` (None: :func:`compiler.place.default_nblocks`, as in every command),
    followed by the D2S calibration when ``calibrate`` is set (settings ``calib_config``; its defaults when None).
    """
    kind, _entry, folder = resolve_source(model)
    if kind == "shape":
        raise ModelError(f"model {model!r} is shape-only (no weights); a run needs a tiny-* model, 'minilm' or "
                         f"a checkpoint folder")
    if kind == "d2s":
        return _prepare_d2s(model, folder, nblocks, calibrate)
    spec = load_model_spec(model)
    check_family(spec.family, model)
    nblocks = int(default_nblocks(spec) if nblocks is None else nblocks)
    dense = load_hf_model(model)
    factors = project_model(spec, dense, nblocks, show_progress=show_progress)
    if calibrate:
        cfg = calib_config if calib_config is not None else CalibConfig()
        factors, _record = calibrate_factors(spec, dense, factors, cfg, show_progress=show_progress)
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


def calibration_texts(n: int = 64) -> list[str]:
    """Return ``n`` calibration sentences, an even spread of :func:`mapper.evaluate.textdata.calibration_sentences`."""
    sents = calibration_sentences()
    if not sents:
        return ["The quick brown fox jumps over the lazy dog."]
    step = max(1, len(sents) // n)
    return sents[::step][:n]

