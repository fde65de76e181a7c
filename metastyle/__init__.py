"""metastyle: few-shot style transfer. An encoder-decoder on a frozen VGG16 stylizes any painting
in one pass and refines it in a few steps; a MAML-trained Johnson generator is kept for research."""

import os

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning makes
# 2-thread torch jobs 10x slower next to a training run (experiments/LOG.md, 2026-11-25).
# Must happen before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The public Python API (see metastyle.stylizer), imported on first use so that `import
# metastyle` and the CLI's start-up stay free of torch. No submodule shares these names, so
# importing a submodule never shadows them.
__all__ = ["Stylizer", "adapt", "load_stylizer", "stylize", "zero_shot"]


def __getattr__(name):
    if name in __all__:
        from . import stylizer

        return getattr(stylizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

