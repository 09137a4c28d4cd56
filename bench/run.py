#!/usr/bin/env python3
"""The benchmarks' entry point: see harness.py (the harness), backends.py (the servers) and
figures.py (what each figure measures and how it is shown)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
