"""The path-length claim's two controls, as constructions (the claim and the planted tests call these same functions).

- ``shuffled_targets`` + ``score_targets``: each position scored, from the same forward pass, on a next token drawn
  from elsewhere in its own document. logit = h_norm . W_U[row] (no unembedding bias; the claim checks this against
  the model's own logits), log p = logit - logsumexp. A path-length association that holds just as well here is about
  how the model scores the document's tokens in general (e.g. its logsumexp), not about the correct token.
- ``word_shuffled``: the passage's words in a seeded random order. An association that holds just as well on it is
  not about language.
Each control passes (the claim is ``confounded``) on a planted confound built with these functions
(tests/test_pathlength_controls.py). No torch here.
"""
from __future__ import annotations

import numpy as np

from mechclaims.stats.pathlength import shuffle_within_documents


def word_shuffled(text: str, seed: int, doc: int) -> str:
    """The passage's words in a seeded random order (the word-shuffled-text control)."""
    words = text.split()
    return " ".join(words[i] for i in np.random.default_rng([seed, doc]).permutation(len(words)))


def shuffled_targets(targets: np.ndarray, doc_ids: np.ndarray, seed: int) -> np.ndarray:
    """Each token's next-token id replaced by one drawn (without replacement) from its own document."""
    return shuffle_within_documents(np.asarray(targets), doc_ids, seed)


def score_targets(normed: np.ndarray, w_u: np.ndarray, ids: np.ndarray, lse: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(logit, log p) of token ``ids[t]`` at each position: ``normed[t] . w_u[ids[t]]`` and that minus ``lse[t]``."""
    logit = np.einsum("nd,nd->n", np.asarray(normed), np.asarray(w_u)[np.asarray(ids, dtype=np.int64)])
    return logit, logit - np.asarray(lse)
