"""``python -m mechclaims prepare [--cache-dir DIR]``: convert the default model's GGUF once (setup step)."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mechclaims")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the converted-weights cache for the built-in models")
    p.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    from .errors import MechClaimsError
    from .models import smollm2_dir

    try:
        t = time.perf_counter()
        d = smollm2_dir(args.cache_dir)
        print(f"mechclaims: smollm2-135m ready at {d} ({time.perf_counter() - t:.1f} s)")
    except MechClaimsError as e:
        print(f"mechclaims: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
