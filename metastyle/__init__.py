"""metastyle: few-shot style adaptation with a meta-learned (MAML / Meta-SGD) generator."""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made
# 2-thread torch jobs 10x slower next to a training run (experiments/LOG.md, 2026-11-25).
# Must happen before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
