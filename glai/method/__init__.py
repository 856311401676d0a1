"""The GLAI method (paper 3; docs/method.md): heads, MLP -> GLAI conversion, pruning, the parameter budget, the
dense and sparse estimators, and the pipeline that ties them together (:mod:`glai.method.pipeline`)."""

from glai.method.budget import ParamBudget, count_parameters, parameter_budget
from glai.method.conversion import PathExpansion, mlp_to_glai
from glai.method.dense_estimator import DenseEstimator
from glai.method.heads import GLAIHead, LinearHead, MLPHead, reduced_arch
from glai.method.pipeline import (
    Conversion,
    GLAIOptions,
    GLAIRun,
    as_mlp_head,
    build_glai_head,
    conversion_error,
    convert,
    train_glai,
)
from glai.method.pruning import KeptPaths, prune
from glai.method.sparse_estimator import SparseEstimator

__all__ = [
    "Conversion",
    "DenseEstimator",
    "GLAIHead",
    "GLAIOptions",
    "GLAIRun",
    "KeptPaths",
    "LinearHead",
    "MLPHead",
    "ParamBudget",
    "PathExpansion",
    "SparseEstimator",
    "as_mlp_head",
    "build_glai_head",
    "conversion_error",
    "convert",
    "count_parameters",
    "mlp_to_glai",
    "parameter_budget",
    "prune",
    "reduced_arch",
    "train_glai",
]
