import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fixtures import write_video  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session: starting Ray costs seconds."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def small_preprocess():
    from pipeline.config import Preprocess

    # 64 px inputs keep ResNet-50 fast enough on 2 CPU cores; the code path is the same.
    return Preprocess(input_size=64)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, small_preprocess):
    import torch

    from pipeline.model import build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(path, build_model(), preprocess=small_preprocess, threshold=0.5)
    return str(path)


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "face.mp4", frames=24)
