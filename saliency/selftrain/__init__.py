"""Stage 6, ``saliency self-train``: learning from unlabeled photographs (docs/method.md §5b)."""
