import pytest
import torch


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Tiny batch-1 models run fastest single-threaded; idle OpenMP
    workers spin against other load.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
