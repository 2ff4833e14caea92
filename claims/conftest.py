"""Session-scoped activations shared by several claims: each stimulus set runs through each model once."""
from __future__ import annotations

from pathlib import Path

import pytest

from mechclaims.forward.capture import Activations, capture, encode
from mechclaims.datasets.passages import load_passages
from mechclaims.datasets.io import stimuli_hash

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Residual sites need every token of every passage; cap the tokens the additivity identity checks so the
# captured residuals stay ~100 MB on the default model (the identity is per token, so more adds nothing).
ADDITIVITY_MAX_SEQS = 4


def passages(mc) -> list[dict]:
    """Natural passages ({doc_id, text}); override with --stimuli passages=PATH (.jsonl or blank-line-separated .txt)."""
    return [{"doc_id": p.doc_id, "text": p.text}
            for p in load_passages(mc.stimuli_path("passages", FIXTURES / "passages.jsonl"))]


@pytest.fixture
def residual_acts(lm, mc, model_pool) -> Activations:
    """Every residual-stream site of ``lm`` at every token of the first passages, captured once per session."""
    docs = passages(mc)[:ADDITIVITY_MAX_SEQS]

    def run() -> Activations:
        sm = lm.sitemap
        sites = [f"blocks.{l}.{k}" for l in range(lm.n_layers)
                 for k in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")]
        if "hook_resid_mid" in sm.layer:
            sites += [f"blocks.{l}.hook_resid_mid" for l in range(lm.n_layers)]
        if sm.final_norm:
            sites += ["ln_final.hook_in", "ln_final.hook_normalized"]
        ids = [x[:256] for x in encode(lm, [d["text"] for d in docs])]
        return capture(lm, ids, sites, "all", batch_size=8)

    return model_pool.activations(lm, "residual", (stimuli_hash(docs), 256), run)
