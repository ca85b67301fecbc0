import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on loopback with 4 logical CPUs and 2 logical GPUs, shut down after the module."""
    import ray

    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
