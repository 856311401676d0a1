"""The pruned GLAI estimator op: reference, layout, PyTorch CSR path, compiled CPU kernels, Triton kernels,
autograd op."""

from glai.kernels.estimator.compiled import cpp_available, estimator_bwd_cpp, estimator_fwd_cpp
from glai.kernels.estimator.cpu import estimator_bwd_torch, estimator_fwd_torch
from glai.kernels.estimator.function import (
    BACKENDS,
    EstimatorFunction,
    backend_label,
    glai_estimator,
    resolve_backend,
)
from glai.kernels.estimator.layout import PathLayout
from glai.kernels.estimator.reference import estimator_reference
from glai.kernels.estimator.triton import estimator_bwd, estimator_fwd, triton_available

__all__ = [
    "BACKENDS",
    "EstimatorFunction",
    "PathLayout",
    "backend_label",
    "cpp_available",
    "estimator_bwd",
    "estimator_bwd_cpp",
    "estimator_bwd_torch",
    "estimator_fwd",
    "estimator_fwd_cpp",
    "estimator_fwd_torch",
    "estimator_reference",
    "glai_estimator",
    "resolve_backend",
    "triton_available",
]
