import os

import pytest
import torch

# The Triton kernels run on CPU through the interpreter; it must be on before the kernels are defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "interpreter: runs Triton kernels (under TRITON_INTERPRET=1 on CPU: small sizes only)"
    )


@pytest.fixture(autouse=True)
def _tuning_in_a_folder_of_its_own(tmp_path_factory, monkeypatch):
    """The compiled estimator's tuning (glai/kernels/estimator/tuning.py) writes its choices under GLAI_CACHE_DIR:
    a fresh folder per test, never the user's cache, and this process's memory of choices forgotten around it."""
    from glai.kernels.estimator import tuning

    monkeypatch.setenv("GLAI_CACHE_DIR", str(tmp_path_factory.mktemp("glai-cache")))
    monkeypatch.delenv(tuning.ENV, raising=False)
    tuning.clear_memory()
    tuning.cpu_key.cache_clear()  # a test may stand in another CPU's signature
    yield
    tuning.clear_memory()
    tuning.cpu_key.cache_clear()
