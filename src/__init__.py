"""OKKTOPUS, a self-hosted social media manager."""

import os
import sys
from pathlib import Path

# piccolo_conf.py lives at the repository root; make it importable from any entry point.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
os.environ.setdefault("PICCOLO_CONF", "piccolo_conf")
