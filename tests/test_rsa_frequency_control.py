"""Q/K surface controls on a user's file without word frequencies (issue 27, round three).

Before: without Zipf values the frequency control grouped the words by token-id rank. On a user's 47-word file that
stand-in passed claim A's rule at 30/30 layers for every grouping tried (one sharing almost nothing with the
categories, ARI 0.066), so no file without frequencies could come out ``supported``. Now the frequency grouping
needs frequencies: without them its controls are left out (inapplicable, never a pass), the verdict says why and how
to add them, and the control test skips with that reason.
Falsified by: a frequency grouping built from anything but the file's frequencies, or a left-out control that gates.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mechclaims.stats.rsa_rotation import surface_groupings

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent


def test_no_frequency_grouping_without_frequencies():
    words = ["apple", "bear", "cat", "dog", "eel", "fig", "goat", "hen"]
    assert set(surface_groupings(words, 2, None)) == {"first_letter", "char_length"}
    assert set(surface_groupings(words, 2, np.arange(8.0))) == {"first_letter", "char_length", "frequency"}


def test_frequency_controls_left_out_and_said(tiny, claim_module, claim_context, tmp_path):
    src = json.loads((ROOT / "fixtures" / "rsa_categories.json").read_text())
    src.pop("zipf", None)
    user = tmp_path / "no_zipf.json"
    user.write_text(json.dumps(src))
    mod, lm = claim_module("test_rsa"), tiny("tiny-gpt2")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = claim_context(lm, mod, tmp, stimuli={"rsa_categories": str(user)})
        assert "frequency" not in mod.groupings(ctx)
        for which, name in ((mod.A, "sel_surface_frequency"), (mod.C, "beyond_surface_frequency")):
            v = mod.gated(ctx, which)
            assert name in v.inapplicable and name not in v.controls, v.explain()
            assert "zipf" in v.reason and str(user) in v.reason, v.reason
            assert {f"{p}_surface_first_letter" for p in ("sel", "beyond")} & set(v.controls)
