"""`metastyle serve`: a small web service and page for onboarding a style into an app.

Upload a style image, watch it being learned (a few adaptation steps), then stylize photos
with it; styles are kept on disk across restarts. Routes are in `app`, the bounded worker
pool in `jobs`, the on-disk style folder in `store`, the zero-shot (k = 0) models of styles
still being learned in `zeroshot`, the page in ``static/``.
Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart).
"""

import importlib.util

from ..errors import UserError

_missing = [m for m in ("fastapi", "uvicorn", "python_multipart")
            if importlib.util.find_spec(m) is None]
if _missing:
    raise UserError(f"metastyle serve needs {', '.join(_missing)}: "
                    "pip install 'metastyle[serve]'")

from .app import create_app, run  # noqa: E402  (after the check, for its one-line error)

__all__ = ["create_app", "run"]
