"""Evaluation: prediction sources (:mod:`.sources`, :mod:`.checkpoint`) and the evaluation stage
(:mod:`.stage`), imported from their modules so that reading a source does not load the stage."""
