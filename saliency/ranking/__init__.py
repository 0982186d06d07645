"""Stage 2: rank latent directions by DVN and choose the background-removal direction automatically."""

from saliency.ranking.artifacts import RANK_FILE, Choice, load_choice
from saliency.ranking.dvn import DVNSettings, GroupedLeNet, dvn_scores, dvn_top
from saliency.ranking.select import Candidate, MaskSettings, choose, score_candidates

__all__ = ["RANK_FILE", "Candidate", "Choice", "DVNSettings", "GroupedLeNet", "MaskSettings", "choose",
           "dvn_scores", "dvn_top", "load_choice", "score_candidates"]
