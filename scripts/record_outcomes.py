"""Record the outcomes of a run as the expected ones: ``mechclaims record-outcomes`` (mechclaims/report/record.py).

    mechclaims record-outcomes artifacts/summary.json [more summaries...]

This script is kept as a thin wrapper for old habits; it runs the same command.
"""
from __future__ import annotations

import sys

from mechclaims.cli import main

if __name__ == "__main__":
    sys.exit(main(["record-outcomes", *sys.argv[1:]]))
