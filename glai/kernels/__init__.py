"""Custom ops, one package per op: ``reference.py`` (the spec), ``triton.py`` (kernels + host functions),
``function.py`` (autograd + public op with ``backend="auto"|"triton"|"torch"``)."""

from glai.kernels.estimator import EstimatorFunction, PathLayout, estimator_reference, glai_estimator

__all__ = ["EstimatorFunction", "PathLayout", "estimator_reference", "glai_estimator"]
