import os

import torch

# The Triton kernels run on CPU through the interpreter; it must be on before the kernels are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "interpreter: runs Triton kernels (under TRITON_INTERPRET=1 on CPU: small sizes only)"
    )
