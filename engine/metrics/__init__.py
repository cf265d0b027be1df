"""Can these maps be trusted? Faithfulness curves and sanity checks for any Explanation.

- `deletion_insertion`: deletion / insertion curves and their AUCs (Petsiuk et al. 2018);
- `randomisation_check`: cascading model-parameter randomisation (Adebayo et al. 2018);
- `trust_metrics`: both, plus the integrated-gradients completeness error, for one Explanation.
"""
from .faithfulness import FaithfulnessCurves, auc, deletion_insertion
from .randomisation import FLAG_THRESHOLD, RandomisationResult, randomisation_check, spearman, ssim
from .trust import TrustMetrics, trust_metrics

__all__ = [
    "FLAG_THRESHOLD", "FaithfulnessCurves", "RandomisationResult", "TrustMetrics", "auc", "deletion_insertion",
    "randomisation_check", "spearman", "ssim", "trust_metrics",
]
