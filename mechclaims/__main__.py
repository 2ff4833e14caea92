"""``python -m mechclaims prepare [--model NAME ...] [--cache-dir DIR]``: assemble and convert the GGUF-backed
models once (a set-up step; ``make setup`` prepares the default model, ``make claims MODELS=...`` the others)."""
from __future__ import annotations

import argparse
import sys
import time

from mechclaims.errors import MechClaimsError
from mechclaims.model.gguf import gguf_dir, load_tokenizer
from mechclaims.model.registry import DEFAULT_MODEL, GGUF_MODELS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mechclaims")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the converted-weights cache for the built-in GGUF models")
    p.add_argument("--model", action="append", default=None, metavar="NAME",
                   help=f"a GGUF-backed model to prepare: {', '.join(GGUF_MODELS)}; repeatable "
                        f"(default: {DEFAULT_MODEL}; other models need nothing prepared and are skipped)")
    p.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    try:
        for name in dict.fromkeys(args.model or [DEFAULT_MODEL]):
            if name not in GGUF_MODELS:
                print(f"mechclaims: {name} needs no preparing (only {', '.join(GGUF_MODELS)} are converted)")
                continue
            t = time.perf_counter()
            d = gguf_dir(name, args.cache_dir)
            load_tokenizer(name, args.cache_dir)  # reads and memoises the GGUF's BOS/EOS metadata, checks the pin
            print(f"mechclaims: {name} ready at {d} ({time.perf_counter() - t:.1f} s)")
    except MechClaimsError as e:
        print(f"mechclaims: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
