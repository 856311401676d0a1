"""GLAI: GreenLightningAI heads (frozen path selector + linear estimator over its paths), arXiv 2510.00883.

The public pieces, one concern per module: heads (:mod:`glai.heads`), MLP -> GLAI conversion
(:mod:`glai.conversion`), parameter matching (:mod:`glai.params`), pruning (:mod:`glai.pruning`), estimators
(:mod:`glai.estimator`, :mod:`glai.sparse_estimator`, kernels in :mod:`glai.kernels.estimator`), training
(:mod:`glai.training`, :mod:`glai.tasks`), runs and records (:mod:`glai.runner`, :mod:`glai.records`),
statistics, tables and figures (:mod:`glai.stats`, :mod:`glai.tables`, :mod:`glai.plots`).
"""

from glai.conversion import PathExpansion, mlp_to_glai
from glai.estimator import DenseEstimator
from glai.heads import GLAIHead, LinearHead, MLPHead, reduced_arch
from glai.params import ParamBudget, parameter_budget
from glai.pruning import KeptPaths, prune
from glai.sparse_estimator import SparseEstimator

__all__ = [
    "DenseEstimator",
    "GLAIHead",
    "KeptPaths",
    "LinearHead",
    "MLPHead",
    "ParamBudget",
    "PathExpansion",
    "SparseEstimator",
    "mlp_to_glai",
    "parameter_budget",
    "prune",
    "reduced_arch",
]
