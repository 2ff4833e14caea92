"""Self-tests of the site maps: every mapped family, as a seeded tiny random model, proves its map.

Ids are family names, so ``pytest tests -k "sites and gemma2"`` runs one family. Per family:

1. Residual identity at every layer (``mechclaims.stats.additivity.additivity_verdict``): pre-LN families
   ``resid_pre[l+1] = resid_pre[l] + attn_out + mlp_out`` (target ``ln_final.hook_in`` after the last block, i.e.
   before the final norm), plus ``resid_mid = resid_pre + attn_out`` where a resid_mid exists; post-LN families
   ``resid_mid = LN1(resid_pre + attn_out)``, ``resid_post = LN2(resid_mid + mlp_out)``. Pass rule: the max over
   tokens of the relative error is at most TOLERANCE[dtype] and at most SEPARATION[dtype] x the median error of
   the resid_pre-only reconstruction. float32: 1e-5, because a sum of three residual-sized float32 terms is
   exact to ~1e-7 relative (measured: <= 1.3e-7 tiny, 2.1e-7 real weights), so 1e-5 leaves ~50x headroom and
   anything larger is a wrong tensor, not round-off. bfloat16: 3e-2, because the model itself rounds each residual
   add to 8 mantissa bits (eps 7.8e-3), and where attn_out or mlp_out cancels part of h the rounding of the larger
   partial sum shows relative to the smaller result (measured: <= 3.6e-3 tiny; 1.3e-2 at smollm2-135m layer 9,
   ratio 0.058 to the resid_pre-only error, under the 0.1 separation).
2. Every resid_* site equals the matching ``output_hidden_states`` entry (the last block's resid_post equals
   ``ln_final.hook_in``; ``hidden_states[-1]`` equals ``ln_final.hook_normalized``).
3. Every site is live: perturbing it (``mechclaims.forward.capture.intervene``; derived sites through
   ``SiteSpec.apply_edit``) changes the logits.
4. q/k: shapes ``[n_heads, d_head]`` / ``[n_kv_heads, d_head]``; concatenated heads equal the projection (after
   any q/k norm); and, observed inside the attention kernel, the model's q/k equal hook_q/hook_k at position 0,
   keep their per-head norms, and differ at later positions: the sites are *before* rotary.
5. Negative control: the family's deliberately wrong map (tests/tiny_families.WRONG) fails the identity.

The real default model (smollm2-135m), gemma3-270m (skipped, with the install command, where its packages are
missing) and MiniLM pass the same identities on their real weights; for the causal ones hook_logits is checked to
be the model's logits (through the final softcap, where the config has one) and resid_pre[0] the scaled embedding. Each test adds
its numbers to the support matrix (``support_matrix.json`` in the artifacts dir, or $MECHCLAIMS_SUPPORT_MATRIX),
which scripts/support_matrix.py renders.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mechclaims.forward.capture import capture, encode, intervene
from mechclaims.errors import SiteError
from mechclaims.forward.readings import identity_checks, identity_sites
from mechclaims.model.families import FAMILIES
from mechclaims.model.sites import available_sites, base_of, resolve, sitemap_for
from mechclaims.stats.additivity import SEPARATION, TOLERANCE

sys.path.insert(0, str(Path(__file__).parent))
import tiny_families as tf  # noqa: E402

FAMS = list(tf.FAMILY_IDS)
REAL = ["smollm2-135m", "gemma3-270m", "minilm-l6"]
OPTIONAL = {"gemma3-270m"}  # a second real model: skipped with its install command where it is not installed
TEXTS = ["The committee approved the budget after a long debate.", "She bought two apples and a pear.",
         "Rivers carry sediment to the sea."]
_MODELS: dict = {}
MATRIX: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """Single-threaded torch for these tests: tiny matmuls are too small to split, and two OpenMP threads spin-wait
    on each other (measured per tiny forward: 3 ms CPU with one thread, 18-100 ms with two on a busy 2-core box;
    smollm2-135m on 3x8 tokens: 0.2 s vs 1.6 s)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def _support_matrix(mc):
    """After the module: merge this run's rows into the support-matrix JSON (rows keyed by family, so partial
    runs, -k selections and xdist workers each add what they measured)."""
    yield
    if not MATRIX:
        return
    from filelock import FileLock

    path = Path(os.environ.get("MECHCLAIMS_SUPPORT_MATRIX") or mc.artifacts / "support_matrix.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"mechclaims-matrix-{digest}.lock"  # not beside the JSON (docs/)
    with FileLock(str(lock)):
        old = json.loads(path.read_text()) if path.exists() else {}
        rows = old.get("rows", {})
        for key, row in MATRIX.items():
            rows[key] = {**rows.get(key, {}), **row}
        path.write_text(json.dumps({
            "tolerance": TOLERANCE, "separation": SEPARATION, "order": FAMS + REAL,
            "rows": {k: rows[k] for k in sorted(rows, key=lambda k: (FAMS + REAL + [k]).index(k))}}, indent=1))


def _tiny(fam: str, dtype: str = "float32"):
    if (fam, dtype) not in _MODELS:
        _MODELS[fam, dtype] = tf.build(fam, dtype)
    return _MODELS[fam, dtype]


def _row(key: str, lm) -> dict:
    import transformers

    sm = lm.sitemap
    return MATRIX.setdefault(key, {
        "family": key, "class": type(lm.model).__name__, "map": sm.family, "residual": sm.residual,
        "block": sm.block, "positions": sm.positions, "sites": list(sm.kinds()),
        "global_sites": [g for g, ok in (("ln_final", sm.final_norm is not None),
                                         ("logits", lm.model.get_output_embeddings() is not None)) if ok],
        "real_weights": key in REAL, "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__})


def read_with(lm, ids, names, sm) -> dict[str, np.ndarray]:
    """Read sites through an explicit (possibly wrong) map: the same hook rules as capture(), all positions of
    equal-length rows, flattened to [n_tokens, ...]."""
    got, handles = {}, []
    for n in names:
        rs = resolve(lm.model, n, sitemap=sm)

        def keep(x, rs=rs):
            x = x[0] if isinstance(x, tuple) else x
            x = rs.spec.post(x, lm.model.config) if rs.spec.post else x
            got[rs.name] = x.detach().float().reshape(-1, *x.shape[2:]).numpy()
        if rs.spec.hook == "input":
            handles.append(rs.module.register_forward_pre_hook(
                lambda mod, args, kw, f=keep: f(args[0] if args else next(iter(kw.values()))), with_kwargs=True))
        else:
            handles.append(rs.module.register_forward_hook(lambda mod, args, o, f=keep: f(o)))
    try:
        with torch.no_grad():
            lm.model(input_ids=torch.tensor(ids))
    finally:
        for h in handles:
            h.remove()
    return got


def _worst(vs) -> float:
    return max(v.statistic for _, v in vs)


def _assert_all_pass(vs, what: str) -> None:
    bad = [f"{eq}: {v.explain()}" for eq, v in vs if not v.passed]
    assert not bad, f"{what}: {len(bad)} identities fail:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------------------------------------------
# 1. Residual identity, float32 and bfloat16


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("fam", FAMS)
def test_sites_residual_identity(fam, dtype):
    lm = _tiny(fam, dtype)
    sm = lm.sitemap
    acts = capture(lm, tf.ids(), identity_sites(lm, sm), "all")
    vs = identity_checks(lm, acts, sm)
    _row(fam, lm)[dtype] = _worst(vs)
    _assert_all_pass(vs, f"{fam} ({dtype}, tolerance {TOLERANCE[dtype]:g}, separation {SEPARATION[dtype]:g})")


# ---------------------------------------------------------------------------------------------------------------
# 2. resid_* == output_hidden_states


def _check_hidden_states(lm, ids) -> None:
    sm, L = lm.sitemap, lm.n_layers
    names = [f"blocks.{l}.{k}" for l in range(L) for k in ("hook_resid_pre", "hook_resid_post")]
    names += ["ln_final.hook_in", "ln_final.hook_normalized"] if sm.final_norm else []
    acts = capture(lm, ids, names, "all")
    with torch.no_grad():
        hs = lm.model(input_ids=torch.tensor(ids), output_hidden_states=True).hidden_states
    assert len(hs) == L + 1, f"{len(hs)} hidden_states for {L} layers"
    flat = [h.float().reshape(-1, h.shape[-1]).numpy() for h in hs]
    def eq(a, b, what):  # the same tensor, read two ways: equal up to float32 printing noise
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max(), err_msg=what)

    for l in range(L):
        eq(acts[f"blocks.{l}.hook_resid_pre"], flat[l], f"resid_pre[{l}] vs hidden_states[{l}]")
        if l < L - 1 or not sm.final_norm:
            eq(acts[f"blocks.{l}.hook_resid_post"], flat[l + 1], f"resid_post[{l}] vs hidden_states[{l + 1}]")
    if sm.final_norm:  # the last block's output is before the final norm; HF's hidden_states[-1] after it
        eq(acts[f"blocks.{L - 1}.hook_resid_post"], acts["ln_final.hook_in"], "last resid_post vs ln_final.hook_in")
        eq(acts["ln_final.hook_normalized"], flat[L], "ln_final.hook_normalized vs hidden_states[-1]")
        assert not np.allclose(acts["ln_final.hook_in"], flat[L], atol=1e-3), "final norm is the identity?"


@pytest.mark.parametrize("fam", FAMS)
def test_sites_resid_equal_hidden_states(fam):
    _check_hidden_states(_tiny(fam), tf.ids())


# ---------------------------------------------------------------------------------------------------------------
# 3. Liveness


def _perturbed_logits(lm, name: str, ids, seed: int) -> torch.Tensor:
    rs = resolve(lm.model, name)
    gen = torch.Generator().manual_seed(seed)

    def edit(x):
        return x + 0.5 * (x.float().std() + 1e-3) * torch.randn(x.shape, generator=gen).to(x.dtype)
    inp = torch.tensor(ids)
    if rs.spec.editable:
        with intervene(lm, name, edit), torch.no_grad():
            return lm.model(input_ids=inp).logits
    # Derived views (split heads, scaled): edit the canonical view, write it back into the raw tensor.
    cfg = lm.model.config
    if rs.spec.hook == "input":
        h = rs.module.register_forward_pre_hook(
            lambda mod, args: (rs.spec.apply_edit(args[0], edit, cfg),) + tuple(args[1:]))
    else:
        h = rs.module.register_forward_hook(lambda mod, args, out: rs.spec.apply_edit(out, edit, cfg))
    try:
        with torch.no_grad():
            return lm.model(input_ids=inp).logits
    finally:
        h.remove()


@pytest.mark.parametrize("fam", FAMS)
def test_sites_every_site_is_live(fam):
    lm = _tiny(fam)
    ids = tf.ids(n_seq=2)
    with torch.no_grad():
        base = lm.model(input_ids=torch.tensor(ids)).logits
    dead = {}
    names = available_sites(lm.model)
    for i, name in enumerate(names):
        d = float((_perturbed_logits(lm, name, ids, i) - base).abs().max() / base.abs().max())
        if not d > 1e-3:
            dead[name] = d
    _row(fam, lm)["n_sites_live"] = len(names) - len(dead)
    assert not dead, f"{fam}: perturbing these sites leaves the logits unchanged (dead hooks): {dead}"


# ---------------------------------------------------------------------------------------------------------------
# 4. Per-head q/k


def _kernel_present(lm, sm) -> bool:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attn = base_of(lm.model, sm).get_submodule(f"{sm.blocks}.0.{sm.attn}")
    fn = sm.qk_kernel[0]
    impl = getattr(lm.model.config, "_attn_implementation", None) or "eager"
    if fn.startswith("self."):
        return hasattr(attn, fn[5:])
    return fn in vars(sys.modules[type(attn).__module__]) if impl == "eager" else impl in ALL_ATTENTION_FUNCTIONS


def _kernel_probe(lm, sm):
    """Context manager that records, per layer, the (q, k) the attention kernel receives ([B, n, T, d]): the
    eager function named by ``sm.qk_kernel`` (or a method of the attention module), or the registered kernel
    (sdpa, ...) that the model's attn_implementation selects."""
    import contextlib

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attns = [base_of(lm.model, sm).get_submodule(f"{sm.blocks}.{l}.{sm.attn}") for l in range(lm.n_layers)]
    layer_of = {id(a): l for l, a in enumerate(attns)}
    seen: dict[int, tuple] = {}
    fn, qi = sm.qk_kernel
    impl = getattr(lm.model.config, "_attn_implementation", None) or "eager"

    @contextlib.contextmanager
    def probe():
        if fn.startswith("self."):
            meth = fn[5:]
            for l, a in enumerate(attns):
                orig = getattr(a, meth)
                def rec(*args, o=orig, l=l, **kw):
                    seen[l] = args[qi:qi + 2]
                    return o(*args, **kw)
                setattr(a, meth, rec)
            try:
                yield seen
            finally:
                for a in attns:
                    delattr(a, meth)
            return
        table = sys.modules[type(attns[0]).__module__].__dict__ if impl == "eager" else None
        orig = table[fn] if table is not None else ALL_ATTENTION_FUNCTIONS[impl]

        def wrapped(*args, **kw):
            seen[layer_of[id(args[0])]] = args[qi:qi + 2]
            return orig(*args, **kw)
        local = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
        if table is not None:
            table[fn] = wrapped
        else:
            ALL_ATTENTION_FUNCTIONS[impl] = wrapped
        try:
            yield seen
        finally:
            if table is not None:
                table[fn] = orig
            else:
                ALL_ATTENTION_FUNCTIONS._local_mapping.clear()
                ALL_ATTENTION_FUNCTIONS._local_mapping.update(local)
    return probe()


def check_qk(lm, ids, key: str) -> None:
    """Shapes, projection, kernel (before rotary) and layer-0 position checks of hook_q/hook_k."""
    sm, cfg, L = lm.sitemap, lm.model.config, lm.n_layers
    n_q = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_q
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_q
    names = [f"blocks.{l}.attn.{k}" for l in range(L) for k in ("hook_q", "hook_k", "hook_qk_in")]
    kernel = sm.qk_kernel and _kernel_present(lm, sm)
    if kernel:
        with _kernel_probe(lm, sm) as seen:
            acts = capture(lm, ids, names, "all")
    else:
        acts = capture(lm, ids, names, "all")
    B, T = len(ids), len(ids[0])
    if kernel and not seen:  # present, but this version's attention never calls it (BERT under transformers 4.x
        kernel = False       # runs its own sdpa)
    # Without rotary, the attention scores prove q/k when no kernel can be probed (absent or never called).
    by_scores = not sm.qk_kernel or (not kernel and sm.positions != "rotary")
    if by_scores:
        _check_scores(lm, sm, ids, acts)
    for l in range(L):
        q, k = acts[f"blocks.{l}.attn.hook_q"], acts[f"blocks.{l}.attn.hook_k"]
        assert q.shape == (B * T, n_q, d) and k.shape == (B * T, n_kv, d), (q.shape, k.shape, (n_q, n_kv, d))
        _check_projection(lm, sm, l, acts[f"blocks.{l}.attn.hook_qk_in"], q, k)
        if kernel:
            for ours, theirs in zip((q, k), seen[l]):
                theirs = theirs.detach().float().permute(0, 2, 1, 3).reshape(ours.shape).numpy()
                _check_kernel(sm, ours.reshape(B, T, -1, d), theirs.reshape(B, T, -1, d), f"{key} L{l}")
    # With a repeated token, layer 0's residual carries no position unless the family adds learned positions
    # to it: then hook_q is identical at every position, which a post-rotary tensor never is.
    rep = capture(lm, [[ids[0][1]] * T], ["blocks.0.attn.hook_q"], "all")["blocks.0.attn.hook_q"]
    spread = float(np.abs(rep - rep[:1]).max() / np.abs(rep).max())
    assert (spread < 1e-6) == (sm.positions != "learned"), f"{key}: layer-0 q spread over positions {spread:.2e}"
    if sm.qk_kernel and not kernel and not by_scores:
        import transformers

        pytest.skip(f"{key}: shapes, projection and layer-0 checks pass, but the attention kernel {sm.qk_kernel[0]} "
                    f"does not exist in transformers {transformers.__version__}, so 'before rotary' is unproven")
    _row(key, lm)["qk"] = {"rotary": "q/k before rotary", "learned": "no rotary (learned positions in the "
                           "residual)", "alibi": "no rotary (ALiBi on the scores)"}[sm.positions]


@pytest.mark.parametrize("fam", FAMS)
def test_sites_qk_heads(fam):
    check_qk(_tiny(fam), tf.ids(), fam)


def _check_projection(lm, sm, l, x, q, k) -> None:
    """Concatenated heads = the q projection of hook_qk_in (then the q-norm, if the family has one); each head
    of a fused projection is one contiguous d_head-wide slice of it."""
    proj = resolve(lm.model, f"blocks.{l}.attn.hook_qk_in").module
    with torch.no_grad():
        p = proj(torch.tensor(x))
        qn = resolve(lm.model, f"blocks.{l}.attn.hook_q").module
        if qn is not proj:  # q/k norm after the projection: per head (weight d_head wide) or over all heads
            per_head = qn.weight.numel() == q.shape[-1]
            p = qn(p.reshape(q.shape)).reshape(len(x), -1) if per_head else qn(p)
    p = p.numpy()
    flat = q.reshape(len(x), -1)
    if p.shape[1] == flat.shape[1]:
        np.testing.assert_allclose(flat, p, rtol=1e-5, atol=1e-5 * np.abs(p).max(),
                                   err_msg="concatenated q heads != projection output")
        return
    d = q.shape[-1]  # fused qkv: each head of q and of k is its own d_head-wide slice of the projection
    slices = [p[:, o:o + d] for o in range(0, p.shape[1], d)]
    where = {}
    for name, t in (("q", q), ("k", k)):
        for h in range(t.shape[1]):
            hits = [i for i, s_ in enumerate(slices) if np.allclose(t[:, h], s_, atol=1e-5 * np.abs(p).max())]
            assert hits, f"{name} head {h} is no slice of the fused projection"
            where[name, h] = hits[0]
    assert len(set(where.values())) == len(where), f"q/k heads share slices of the projection: {where}"


def _check_scores(lm, sm, ids, acts) -> None:
    """Families whose q/k enter the scores unrotated, with a per-head, per-key bias (ALiBi): the model's own
    attention probabilities must satisfy log p[t,0] - log p[t,1] = a * q_t.(k_0 - k_1) + c_head across query
    rows t (a: the kernel's scale; c: the bias difference). A least-squares fit per head must be exact."""
    with torch.no_grad():
        att = lm.model(input_ids=torch.tensor(ids), output_attentions=True).attentions
    if not att:  # e.g. an sdpa-only attention that cannot return probabilities
        import transformers

        pytest.skip(f"the attention kernel is not called and transformers {transformers.__version__} returns no "
                    f"attention probabilities for {type(lm.model).__name__}: q/k are unproven here")
    B, T = len(ids), len(ids[0])
    for l in range(lm.n_layers):
        q, k = (acts[f"blocks.{l}.attn.{n}"] for n in ("hook_q", "hook_k"))
        q, k = q.reshape(B, T, *q.shape[1:]), k.reshape(B, T, *k.shape[1:])
        lp = np.log(att[l][:, :, 1:, :2].float().numpy())  # rows t >= 1, keys 0 and 1: all unmasked
        for h in range(q.shape[2]):
            y = (lp[:, h, :, 0] - lp[:, h, :, 1]).ravel()
            x = np.einsum("btd,bd->bt", q[:, 1:, h], k[:, 0, h] - k[:, 1, h]).ravel()
            fit = np.polyfit(x, y, 1)
            resid = y - np.polyval(fit, x)
            assert np.abs(resid).max() < 1e-3 * np.abs(y).max() + 1e-4, \
                f"L{l} head {h}: scores are not linear in hook_q . hook_k (resid {np.abs(resid).max():.2e})"


def _check_kernel(sm, ours, theirs, where) -> None:
    """``ours``/``theirs`` [B, T, n, d]: hook vs what the kernel receives."""
    np.testing.assert_allclose(theirs[:, 0], ours[:, 0], atol=1e-5 * np.abs(ours).max(),
                               err_msg=f"{where}: position 0 differs (rotary is the identity there)")
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=-1), np.linalg.norm(ours, axis=-1), rtol=1e-4,
                               err_msg=f"{where}: per-head norms differ (not a rotation of the hooked q/k)")
    later = float(np.abs(theirs[:, 1:] - ours[:, 1:]).max() / np.abs(ours).max())
    if sm.positions == "rotary":
        assert later > 1e-2, f"{where}: kernel q/k equal the hook at t>0 ({later:.1e}): is the hook after rotary?"
    else:
        assert later < 1e-5, f"{where}: kernel q/k differ from the hook ({later:.1e}) in a family without rotary"


# ---------------------------------------------------------------------------------------------------------------
# 5. Wrong maps must fail


@pytest.mark.parametrize("fam", FAMS)
def test_sites_wrong_map_fails_identity(fam):
    lm = _tiny(fam)
    sm = lm.sitemap
    why, make = tf.WRONG[fam]
    wrong = make(sm)
    ids = tf.ids()
    right_vs = identity_checks(lm, read_with(lm, ids, identity_sites(lm, sm), sm), sm)
    wrong_vs = identity_checks(lm, read_with(lm, ids, identity_sites(lm, wrong), wrong), wrong)
    _assert_all_pass(right_vs, f"{fam} correct map")
    n_fail = sum(not v.passed for _, v in wrong_vs)
    _row(fam, lm)["control"] = {"wrong_map": why, "worst_rel_err": _worst(wrong_vs), "failed": n_fail,
                                "of": len(wrong_vs)}
    assert n_fail > 0, f"{fam}: the wrong map ({why}) passes every identity, so the check cannot catch it"


# ---------------------------------------------------------------------------------------------------------------
# Real weights: the default model and MiniLM pass the same identities


def _real(name: str, dtype: str, model_pool, mc):
    """The session's float32 model, or a bfloat16 copy of it (the same weights, cast: what load_model does)."""
    import copy
    import dataclasses

    from mechclaims.errors import ModelError
    from mechclaims.model.load import load_model

    if (name, dtype) not in _MODELS:
        try:
            lm = model_pool.get(name) if mc.dtype == "float32" and mc.device == "cpu" else None
            if lm is None:
                lm = load_model(name, cache=mc.cache_dir, seed=mc.seed)
        except ModelError as e:  # not installed, or a transformers version that cannot build its tokenizer
            if name not in OPTIONAL:
                raise
            pytest.skip(f"{name}: {e}")
        if dtype != "float32":
            lm = dataclasses.replace(lm, model=copy.deepcopy(lm.model).to(getattr(torch, dtype)), dtype=dtype)
        _MODELS[name, dtype] = lm
    return _MODELS[name, dtype]


def _real_ids(lm) -> list[list[int]]:
    ids = encode(lm, TEXTS)
    n = min(map(len, ids))  # equal lengths: no padding anywhere, so every token is checked
    return [x[:n] for x in ids]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", REAL)
def test_sites_real_model_identity(name, dtype, model_pool, mc):
    """The residual identity at every layer of the real weights (gemma3-270m: 18 layers, sandwich norms, embedding
    scale inside resid_pre[0]), and, in the same dtype, the family's wrong twin failing it: the tolerance is tight
    enough on real weights to catch a wrong map. Falsified by any layer's identity failing, a layer left unchecked,
    or a wrong twin that passes every identity."""
    lm = _real(name, dtype, model_pool, mc)
    sm = lm.sitemap
    ids = _real_ids(lm)
    vs = identity_checks(lm, capture(lm, ids, identity_sites(lm, sm), "all"), sm)
    checked = {int(eq.split()[0][1:]) for eq, _ in vs}
    assert checked == set(range(lm.n_layers)), f"{name}: layers {sorted(set(range(lm.n_layers)) - checked)} unchecked"
    row = _row(name, lm)
    row[dtype] = _worst(vs)
    row[f"{dtype}_per_layer"] = [max(v.statistic for eq, v in vs if eq.startswith(f"L{l} "))
                                 for l in range(lm.n_layers)]
    _assert_all_pass(vs, f"{name} ({dtype})")
    why, make = tf.WRONG[sm.family]
    wrong = make(sm)
    wvs = identity_checks(lm, read_with(lm, ids, identity_sites(lm, wrong), wrong), wrong)
    n_fail = sum(not v.passed for _, v in wvs)
    row[f"control_{dtype}"] = {"wrong_map": why, "worst_rel_err": _worst(wvs), "failed": n_fail, "of": len(wvs)}
    assert n_fail > 0, f"{name} ({dtype}): the wrong map ({why}) passes every identity"


@pytest.mark.parametrize("name", [n for n in REAL if n != "minilm-l6"])
def test_sites_real_model_logits_and_embedding(name, model_pool, mc):
    """hook_logits is the unembedding's output. It is the model's logits exactly when the config has no final
    softcap (gemma3-270m: final_logit_softcapping is None, measured), and cap * tanh(hook_logits / cap) when it
    has one (Gemma 2). resid_pre[0] is the embedding times the family's scale (Gemma: sqrt(d_model) = 25.3 for
    gemma3-270m, applied inside its embedding module), so the scale is part of the residual stream."""
    lm = _real(name, "float32", model_pool, mc)
    ids = _real_ids(lm)
    acts = capture(lm, ids, ["hook_logits", "blocks.0.hook_resid_pre"], "all")
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor(ids)).logits.float().reshape(-1, acts["hook_logits"].shape[-1])
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    want = logits.numpy() if cap is None else np.arctanh(logits.numpy() / cap) * cap
    np.testing.assert_allclose(acts["hook_logits"], want, rtol=0, atol=1e-5 * np.abs(want).max(),
                               err_msg=f"hook_logits vs the model's logits (softcap {cap})")
    emb = lm.model.get_input_embeddings()
    scale = float(getattr(emb, "embed_scale", 1.0))
    if lm.sitemap.family.startswith("gemma"):
        assert abs(scale - lm.model.config.hidden_size ** 0.5) < 1e-3, f"Gemma embed_scale {scale}"
    raw = emb.weight.detach()[torch.tensor(ids).reshape(-1)].float().numpy() * scale
    np.testing.assert_allclose(acts["blocks.0.hook_resid_pre"], raw, rtol=1e-6, atol=1e-6 * np.abs(raw).max(),
                               err_msg="resid_pre[0] vs embedding * embed_scale")
    _row(name, lm)["logits"] = {"softcap": cap, "embed_scale": scale}


@pytest.mark.parametrize("name", REAL)
def test_sites_real_model_hidden_states_qk_and_wrong_map(name, model_pool, mc):
    lm = _real(name, "float32", model_pool, mc)
    ids = _real_ids(lm)
    _check_hidden_states(lm, ids)
    check_qk(lm, ids, name)
    why, make = tf.WRONG[lm.sitemap.family]
    wrong = make(lm.sitemap)
    vs = identity_checks(lm, read_with(lm, ids, identity_sites(lm, wrong), wrong), wrong)
    n_fail = sum(not v.passed for _, v in vs)
    _row(name, lm)["control"] = {"wrong_map": why, "worst_rel_err": _worst(vs), "failed": n_fail, "of": len(vs)}
    assert n_fail > 0, f"{name}: the wrong map ({why}) passes every identity"


# ---------------------------------------------------------------------------------------------------------------
# Errors, and the docs' "adding a family" example


def _unmapped_model(cls_name: str = "Starcoder2", **cfg):
    import transformers

    config = getattr(transformers, f"{cls_name}Config")(**tf._common(**cfg))
    torch.manual_seed(0)
    return getattr(transformers, f"{cls_name}ForCausalLM")(config).eval()


def test_sites_unsupported_architecture_error():
    model = _unmapped_model()
    with pytest.raises(SiteError) as e:
        sitemap_for(model)
    msg = str(e.value)
    assert "Starcoder2ForCausalLM" in msg and "model_type='starcoder2'" in msg
    assert all(f.family in msg for f in FAMILIES), msg
    assert "docs/adding_a_family.md" in msg and "FAMILIES" in msg


def test_sites_unmapped_variant_error():
    import transformers

    cfg = transformers.BloomConfig(vocab_size=tf.V, hidden_size=tf.D, n_layer=2, n_head=tf.H,
                                   apply_residual_connection_post_layernorm=True)
    with pytest.raises(SiteError, match="apply_residual_connection_post_layernorm=True"):
        sitemap_for(transformers.BloomForCausalLM(cfg))
    with pytest.raises(SiteError, match="no hook_resid_mid site.*[Pp]arallel"):
        resolve(_tiny("gpt_neox").model, "blocks.0.hook_resid_mid")


def test_sites_adding_a_family_doc_example(monkeypatch):
    """The ~20-line map in docs/adding_a_family.md works: registered, it passes the identities, hidden_states
    and liveness checks like a built-in family."""
    import re
    from types import SimpleNamespace

    import mechclaims.model.families as sites
    from mechclaims.model.registry import LoadedModel

    doc = (Path(__file__).parent.parent / "docs" / "adding_a_family.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    monkeypatch.setattr(sites, "FAMILIES", sites.FAMILIES)  # register() rebinds it; restored afterwards
    exec(compile(code, "docs/adding_a_family.md", "exec"), {})  # noqa: S102 (our own doc)
    model = _unmapped_model(num_key_value_heads=tf.KV)
    sm = sitemap_for(model)
    assert sm.family == "starcoder2"
    lm = LoadedModel(name="tiny-starcoder2", model=model, tokenizer=SimpleNamespace(pad_token_id=0), kind="causal",
                     family=sm.family, n_layers=tf.L, fingerprint="")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ids = tf.ids()
        _assert_all_pass(identity_checks(lm, capture(lm, ids, identity_sites(lm, sm), "all"), sm), "doc example")
        _check_hidden_states(lm, ids)
        with torch.no_grad():
            base = model(input_ids=torch.tensor(ids[:2])).logits
        for i, name in enumerate(available_sites(model)):
            assert not torch.allclose(_perturbed_logits(lm, name, ids[:2], i), base), f"{name} is dead"
    finally:
        torch.set_num_threads(n)
