"""metastyle: few-shot style adaptation with a meta-learned (MAML / Meta-SGD) generator."""

import os
import sys
import types

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made
# 2-thread torch jobs 10x slower next to a training run (experiments/LOG.md, 2026-11-25).
# Must happen before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The public Python API (see metastyle.stylizer), imported on first use so that `import
# metastyle` and the CLI's start-up stay free of torch.
__all__ = ["Stylizer", "adapt", "load_stylizer", "stylize"]


def __getattr__(name):
    if name in __all__:
        from . import stylizer

        return getattr(stylizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """`adapt` and `stylize` name both API functions and submodules (metastyle/adapt.py,
    metastyle/stylize.py). Importing a submodule normally rebinds the package attribute to it,
    which would make ``metastyle.adapt(...)`` fail once anything had imported metastyle.adapt;
    here the binding is skipped, so the names resolve to the functions via `__getattr__`.
    ``from metastyle.adapt import x`` still works: it goes through sys.modules."""

    def __setattr__(self, name, value):
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
