"""Test-wide settings: one torch thread per process (CI has two cores), headless plotting."""

import os

import matplotlib
import torch as th

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
th.set_num_threads(1)
