"""Test settings of sbx-lecture-pg: one torch thread (CI has two cores), headless plotting, and a clear message
when the plugin is not installed (the tests exercise the installed distribution and its entry point)."""

import importlib.util
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
# the test modules import pg_helpers from this folder, also under --import-mode=importlib (the main suite's mode)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if importlib.util.find_spec("sbx_lecture_pg") is None:
    raise ImportError(
        "sbx-lecture-pg is not installed: run `pip install plugins/sbx-lecture-pg` (from the sbx-lecture checkout) "
        "before running its tests"
    )

import torch as th

th.set_num_threads(1)
