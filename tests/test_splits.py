"""mechclaims.datasets.splits: GED claim C's held-out split keeps whole documents on one side.

Claim: on the bundled natural windows, no source document has windows in both halves, each label is split about
50/50, and the split is a function of the seed. Falsified by a shared document or a label with under a third held out.
"""
from __future__ import annotations

import numpy as np

from mechclaims.datasets.splits import document_split
from mechclaims.model.plant_ged import ged_windows


def test_no_document_is_on_both_sides_and_labels_are_balanced():
    held = ged_windows()
    lab, src = np.asarray(held.labels), np.asarray(held.sources)
    for seed in (0, 1):
        test = document_split(lab, src, seed)
        assert not set(src[test]) & set(src[~test])
        for c in set(lab):
            share = test[lab == c].mean()
            assert 1 / 3 < share < 2 / 3, (c, share)
    assert (document_split(lab, src, 0) == document_split(lab, src, 0)).all()


def test_a_single_source_file_splits_by_item():
    test = document_split(["a", "b"] * 20, ["one"] * 40, 0)
    assert 10 <= test.sum() <= 30
