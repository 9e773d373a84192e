import os

# Triton kernels run in the interpreter on machines without a GPU (must be set before triton is imported).
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # one intra-op thread per xdist worker: `-n 2` on 2 cores would otherwise run 4 threads on 2 cores
        torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic_threads():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random SD pipeline saved to disk: the model of the `accel eval` tests."""
    from accel.pipelines.testing import tiny_text_pipeline

    path = tmp_path_factory.mktemp("model") / "tiny-sd"
    tiny_text_pipeline("unet").save_pretrained(path)
    return str(path)
