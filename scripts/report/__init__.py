"""The GPU engine's report (scripts/gpu_report.py): its measurements (measure.py) and the run as a
user meets it from the command line (user_view.py).

It runs from a checkout where virnucpro may not be installed (the GPU host runs the repository
as copied), so the checkout goes first on sys.path, here and nowhere else in scripts/.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
