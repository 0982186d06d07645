"""``saliency serve``: a local web page that shows a checkpoint's saliency map, mask and cut-out of an
image one drops or picks (:mod:`.app`; the page is ``static/``, plain HTML, CSS and JavaScript).

Flask and waitress are an optional extra (``pip install 'gan-saliency[serve]'``): this module
imports neither, so the CLI can say what is missing before it loads a model.
"""

from __future__ import annotations

from saliency.errors import UserError

EXTRA_HINT = "pip install 'gan-saliency[serve]'"


def require_extras() -> None:
    """One line naming the install command when Flask or waitress is missing."""
    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as error:
        raise UserError(f"saliency serve needs Flask and waitress ({error.name or 'one of them'} is not installed); "
                        f"{EXTRA_HINT}") from None
