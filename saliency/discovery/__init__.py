"""Stage 1: latent directions of a generator (trained, closed-form or imported) and their RCA."""
