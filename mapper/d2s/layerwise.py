"""Stage 1 of the calibration: activation-aware layer-wise fitting, block by block in forward order.

For each group of matmuls that read the same input (Q/K/V, O, FFN up/gate, FFN down, BART cross-attention), the
calibration text is run through the *dense* block and through the *Monarch* block (whose input already carries
the error of the earlier, already-fitted Monarch blocks); each matmul ``(M, b)`` then minimises
``sum_tokens ||y_dense - M x_monarch - b||^2`` (:func:`mapper.d2s.fit.fit_monarch`), so later layers compensate
earlier errors. Where the blocks are, and whether decoder blocks read the encoder output, comes from the family
(:mod:`compiler.families`).
"""

from __future__ import annotations

import inspect

import torch

from cimisa import progress as kit_progress
from cimisa.errors import ModelError
from compiler.families import Family
from compiler.families import family as family_rules
from compiler.spec import ModelSpec
from mapper.d2s.batches import forward
from mapper.d2s.fit import fit_monarch
from mapper.d2s.monarch import MonarchLinear

__all__ = ["layerwise_fit", "blocks_of"]


def blocks_of(model, fam: Family) -> list[tuple[str, str, torch.nn.Module]]:
    """Return ``(stage, prefix, block)`` for every transformer block in forward order."""
    return [(bl.stage, f"{bl.path}.{j}", blk) for bl in fam.blocks
            for j, blk in enumerate(model.get_submodule(bl.path))]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _BlockInputs:
    """Captured ``(args, kwargs)`` of every block call of one forward pass."""

    def __init__(self, blocks):
        self.calls: dict[int, tuple] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self._handles = []
        for j, (_, _, blk) in enumerate(blocks):
            self._handles.append(blk.register_forward_pre_hook(self._pre(j), with_kwargs=True))
            self._handles.append(blk.register_forward_hook(self._post(j)))

    def _pre(self, j):
        def hook(module, args, kwargs):
            self.calls[j] = (args, dict(kwargs))
        return hook

    def _post(self, j):
        def hook(module, args, out):
            self.outputs[j] = _first(out).detach()
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def _hidden_of(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _call_block(block, args, kwargs, hidden: torch.Tensor, encoder_out: torch.Tensor | None):
    if args:
        args = (hidden, *args[1:])
    else:
        kwargs = dict(kwargs, hidden_states=hidden)
    if encoder_out is not None:
        sig = inspect.signature(block.forward)
        bound = sig.bind_partial(*args, **kwargs)
        if "encoder_hidden_states" in bound.arguments and bound.arguments["encoder_hidden_states"] is not None:
            bound.arguments["encoder_hidden_states"] = encoder_out
            return _first(block(*bound.args, **bound.kwargs))
        if "encoder_hidden_states" in kwargs and kwargs["encoder_hidden_states"] is not None:
            kwargs = dict(kwargs, encoder_hidden_states=encoder_out)
    return _first(block(*args, **kwargs))


class _Capture:
    """Forward hooks that record the valid-token inputs (and outputs) of some modules."""

    def __init__(self, model, names, keep_out: bool):
        self.x: dict[str, torch.Tensor] = {}
        self.y: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self._handles = [model.get_submodule(nm).register_forward_hook(self._hook(nm, keep_out)) for nm in names]

    def _hook(self, name, keep_out):
        def hook(module, args, out):
            x = args[0]
            sel = self.mask.reshape(-1) if (self.mask is not None and x.shape[:2] == self.mask.shape) else None
            x2 = x.reshape(-1, x.shape[-1])
            self.x[name] = (x2[sel] if sel is not None else x2).detach().float()
            if keep_out:
                y2 = out.reshape(-1, out.shape[-1])
                self.y[name] = (y2[sel] if sel is not None else y2).detach().float()
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def layerwise_fit(dense, sparse, spec: ModelSpec, batches: list[dict], sweeps: int, ridge: float,
                  show_progress: bool) -> None:
    """Fit every factored matmul of ``sparse`` (in place) to ``dense`` on ``batches``, block by block."""
    fam = family_rules(spec.family)
    blocks_d = blocks_of(dense, fam)
    blocks_s = blocks_of(sparse, fam)
    # One dense pass and one Monarch pass capture every block's call arguments and outputs.
    dense_calls, sparse_in = [], []
    for b in batches:
        cap_d = _BlockInputs(blocks_d)
        cap_s = _BlockInputs(blocks_s)
        with torch.no_grad():
            forward(dense, b)
            forward(sparse, b)
        cap_d.remove()
        cap_s.remove()
        dense_calls.append(cap_d)
        sparse_in.append({j: _hidden_of(*cap_s.calls[j]) for j in cap_s.calls})
    groups_by_block: dict[str, list[list]] = {}
    for m in spec.matmuls:
        if not isinstance(_safe_get(sparse, m.name), MonarchLinear):
            continue
        for _stage, prefix, _ in blocks_s:
            if m.name.startswith(prefix + "."):
                grp = groups_by_block.setdefault(prefix, [])
                for g in grp:
                    if g[0].input_group == m.input_group:
                        g.append(m)
                        break
                else:
                    grp.append([m])
    encoder_out: list[torch.Tensor | None] = [None] * len(batches)
    todo = sum(len(g) for g in groups_by_block.values())
    with kit_progress.stage("calibration: layer-wise fit", total=todo, unit="group", show=show_progress) as bar:
        _fit_blocks(dense, dense_calls, sparse_in, batches, blocks_s, blocks_d, groups_by_block, encoder_out,
                    sparse, fam, sweeps, ridge, bar)


def _fit_blocks(dense, dense_calls, sparse_in, batches, blocks_s, blocks_d, groups_by_block, encoder_out, sparse,
                fam: Family, sweeps: int, ridge: float, bar) -> None:
    last_encoder = max((j for j, (st, _, _) in enumerate(blocks_s) if st == "encoder"), default=None)
    for j, (stage, prefix, blk_s) in enumerate(blocks_s):
        blk_d = blocks_d[j][2]
        use_enc = stage == "decoder" and fam.decoder_reads_encoder
        for group in groups_by_block.get(prefix, []):
            names = [m.name for m in group]
            n_in = group[0].in_features
            C = torch.zeros(n_in + 1, n_in + 1, dtype=torch.float64)
            Ys = {m.name: torch.zeros(m.out_features, n_in + 1, dtype=torch.float64) for m in group}
            for bi, b in enumerate(batches):
                args, kwargs = dense_calls[bi].calls[j]
                mask = b["attention_mask"].bool()
                cd = _Capture(dense, names, keep_out=True)
                cs = _Capture(sparse, names, keep_out=False)
                cd.mask = cs.mask = mask
                with torch.no_grad():
                    _call_block(blk_d, args, kwargs, _hidden_of(args, kwargs), None)
                    _call_block(blk_s, args, kwargs, sparse_in[bi][j], encoder_out[bi] if use_enc else None)
                cd.remove()
                cs.remove()
                x = cs.x[names[0]]
                xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
                C += (xa.t() @ xa).double()
                for nm in names:
                    if cd.y[nm].shape[0] != xa.shape[0]:
                        raise ModelError(f"calibration: token count mismatch at {nm}")
                    Ys[nm] += (cd.y[nm].t() @ xa).double()
            for m in group:
                mod = sparse.get_submodule(m.name)
                R, L, bias = fit_monarch(mod.R.detach(), mod.L.detach(), mod.bias.detach() if mod.bias is not None
                                         else None, C, Ys[m.name], sweeps=sweeps, ridge=ridge)
                with torch.no_grad():
                    mod.R.copy_(R.to(mod.R.dtype))
                    mod.L.copy_(L.to(mod.L.dtype))
                    if bias is not None:
                        mod.bias.copy_(bias.to(mod.bias.dtype))
                bar.update(1)
        # Propagate the Monarch hidden states through the fitted block.
        for bi, _ in enumerate(batches):
            args, kwargs = dense_calls[bi].calls[j]
            with torch.no_grad():
                h = _call_block(blk_s, args, kwargs, sparse_in[bi][j], encoder_out[bi] if use_enc else None)
            if j + 1 < len(blocks_s) and blocks_s[j + 1][0] == stage:
                sparse_in[bi][j + 1] = h
            if j == last_encoder:
                encoder_out[bi] = _encoder_final(sparse, fam, h)


def _encoder_final(model, fam: Family, h):
    """The encoder output the decoder reads: the last block's output through the final norm, if the model has one."""
    ln = _safe_get(model, fam.encoder_final_norm) if fam.encoder_final_norm else None
    return ln(h) if ln is not None else h


def _safe_get(model, name):
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None
