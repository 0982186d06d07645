"""Evaluation: prediction sources (:mod:`.sources`, :mod:`.checkpoint`) and the evaluation stage
(:mod:`.stage`), imported from their modules so that reading a source does not load the stage."""

# The trivial baselines' names (their sources are in :mod:`.sources`, whose BASELINES a test keeps in step):
# here so that `saliency eval --help` lists them without importing torch.
BASELINE_NAMES = ("center", "zeros")
