"""Synthetic image/mask pairs from a generator and its background-removal direction (SPEC.md §4)."""

from saliency.synthesis.masks import (MASK_MODES, area_filter, area_fraction, brightness, diff_masks, shift_latents,
                                      synthesize_batch, threshold_masks)

__all__ = ["MASK_MODES", "area_filter", "area_fraction", "brightness", "diff_masks", "shift_latents",
           "synthesize_batch", "threshold_masks"]
