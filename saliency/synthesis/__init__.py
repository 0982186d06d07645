"""Stage 4: synthetic image/mask pairs from a generator and its background-removal direction (docs/method.md §4).

The mask rules themselves live in :mod:`saliency.masks`, shared with discovery and ranking."""
