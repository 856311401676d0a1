"""GLAI: GreenLightningAI heads (frozen path selector + linear estimator over its paths), arXiv 2510.00883.

The public API, for a trained MLP of your own::

    head = glai.convert(mlp, x_train, keep=50_000, cache=(x_val,))   # MLP -> pruned GLAI head
    hist = glai.fit(head, (x_train, y_train, head.conversion.gates[0]),
                    (x_val, y_val, head.conversion.gates[1]), optimizer="adam", weight_decay=0.1)

or the paper's whole pipeline from scratch with :func:`glai.train_glai`. Packages: :mod:`glai.method` (heads,
conversion, pruning, budget, estimators, pipeline), :mod:`glai.kernels` (the sparse estimator's kernels),
:mod:`glai.data`, :mod:`glai.training`, :mod:`glai.results`; :mod:`glai.runner` runs one configured job.
"""

from glai.method import (
    Conversion,
    DenseEstimator,
    GLAIHead,
    GLAIOptions,
    GLAIRun,
    KeptPaths,
    LinearHead,
    MLPHead,
    ParamBudget,
    PathExpansion,
    SparseEstimator,
    as_mlp_head,
    conversion_error,
    convert,
    mlp_to_glai,
    parameter_budget,
    prune,
    reduced_arch,
    train_glai,
)
from glai.training import History, LoopOptions, OptimizerOptions, fit

__all__ = [
    "Conversion",
    "DenseEstimator",
    "GLAIHead",
    "GLAIOptions",
    "GLAIRun",
    "History",
    "KeptPaths",
    "LinearHead",
    "LoopOptions",
    "MLPHead",
    "OptimizerOptions",
    "ParamBudget",
    "PathExpansion",
    "SparseEstimator",
    "as_mlp_head",
    "conversion_error",
    "convert",
    "fit",
    "mlp_to_glai",
    "parameter_budget",
    "prune",
    "reduced_arch",
    "train_glai",
]
