"""Synthetic image/mask pairs from a generator and its background-removal direction (docs/method.md §4)."""

from saliency.synthesis.masks import (MASK_MODES, MaskRule, SynthBatch, area_filter, area_fraction, brightness,
                                      diff_masks, gray, histogram_maxima_filter, largest_components, lighting_masks,
                                      mean_threshold_masks, shift_latents, synthesize_batch, threshold_masks)

__all__ = ["MASK_MODES", "MaskRule", "SynthBatch", "area_filter", "area_fraction", "brightness", "diff_masks", "gray",
           "histogram_maxima_filter", "largest_components", "lighting_masks", "mean_threshold_masks", "shift_latents",
           "synthesize_batch", "threshold_masks"]
