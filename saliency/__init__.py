"""saliency: a pretrained class-conditional GAN turned into a salient-object detector.

``import saliency`` stays light (no torch), so ``saliency --help`` answers at once: the top-level API
(:class:`Detector`) is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saliency.segmentation.predict import Detector

__version__ = "0.1.0"
__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from saliency.segmentation.predict import Detector

        return Detector
    raise AttributeError(f"module 'saliency' has no attribute {name!r}")
