"""Example patching claim: the swapped token's embedding carries the whole logit difference (README walkthrough)."""
import numpy as np
import pytest

from mechclaims.forward.capture import capture
from mechclaims.datasets.patching import PAIRS_PATH, load_pairs, tokenize_pairs
from mechclaims.forward.patching import PatchTable, run_patched
from mechclaims.stats.patching import pair_share_test, share_verdict


def ld(lm, ids, table, tp):  # the metric: logit(target) - logit(foil) at the last token, one value per row
    lg = run_patched(lm, ids, table, read_tokens=np.stack([tp.target, tp.foil], 1))
    return lg[:, 0] - lg[:, 1]


def denoise(lm, tp, positions, site="blocks.0.hook_resid_pre"):  # clean activations into the corrupt runs
    src = capture(lm, tp.clean, [site], "all")
    table = PatchTable(len(tp.corrupt))
    for i, p in enumerate(positions):
        table.add(site, i, p, src[site][(src.seq == i) & np.isin(src.pos, p)])
    return ld(lm, tp.corrupt, table, tp)


@pytest.mark.claim("swap_embedding_carries_answer", family="causal", kinds=("causal",),
                   controls=("last_token_embedding",))
def test_swap_embedding_carries_answer(ctx, check):
    lm = ctx.lm
    tp = tokenize_pairs(lm, load_pairs(PAIRS_PATH)[:20])
    F, C = ld(lm, tp.clean, None, tp), ld(lm, tp.corrupt, None, tp)
    v = share_verdict(pair_share_test(denoise(lm, tp, tp.swap), C, F, 0.9), 0.05, "swap_embedding_carries_answer")
    ctl = share_verdict(pair_share_test(denoise(lm, tp, [[n - 1] for n in tp.length]), C, F, 0.9), 0.05,
                        "last_token_embedding", role="control")  # an unchanged token: must restore nothing
    check(v.gate({"last_token_embedding": ctl}))
