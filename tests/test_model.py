import pickle

import pytest
import torch
import torchvision

from pipeline.config import Preprocess
from pipeline.model import (
    CheckpointError,
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    set_backbone_trainable,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model().eval()


def test_one_logit_per_image(model):
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)


def test_checkpoint_round_trip_keeps_weights_preprocessing_and_threshold(model, tmp_path):
    pre = Preprocess(input_size=96, margin=0.25)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, preprocess=pre, threshold=0.7, epoch=3)
    ckpt = load_checkpoint(path)
    assert ckpt["preprocess"] == pre and ckpt["threshold"] == 0.7 and ckpt["epoch"] == 3
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model_from_checkpoint(ckpt)(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_model_id_follows_the_content(model, tmp_path):
    save_checkpoint(tmp_path / "a.pt", model, preprocess=Preprocess())
    save_checkpoint(tmp_path / "b.pt", model, preprocess=Preprocess(input_size=128))
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a["model_id"] != b["model_id"]
    assert load_checkpoint(tmp_path / "a.pt")["model_id"] == a["model_id"]


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda p: p.write_text("hello"), "cannot read checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(1)}, p), "not a deepfake-pipeline"),
        (lambda p: p.write_bytes(pickle.dumps(Evil())), "cannot read checkpoint"),
    ],
    ids=["text", "foreign", "pickled-code"],
)
def test_bad_checkpoints_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "c.pt"
    content(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_pretrained_from_a_state_dict_file_keeps_a_new_head(tmp_path):
    donor = torchvision.models.resnet50(weights=None)  # 1000-class head, like ImageNet's
    torch.save({"module." + k: v for k, v in donor.state_dict().items()}, tmp_path / "w.pth")
    model = build_model(pretrained=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc.out_features == 1


def test_imagenet_offline_says_where_to_put_the_file(monkeypatch):
    weights = torchvision.models.ResNet50_Weights.DEFAULT

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    with pytest.raises(CheckpointError, match="put it at .*checkpoints"):
        build_model(pretrained="imagenet")


def test_freezing_leaves_only_the_head_trainable(model):
    set_backbone_trainable(model, False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())
