"""The classifier variants, recipes, input filters and test-time augmentation (no Ray)."""

import os

import cv2
import numpy as np
import pytest
import torch
import torchvision
from fixtures import face_frame
from torch.utils.data import DataLoader

from pipeline.config import DEFAULT_RECIPE, RECIPES, Preprocess, TrainConfig, recipe_config
from pipeline.faces import Box, block_mean, native_window
from pipeline.model import (
    MODELS,
    CheckpointError,
    NPRFilter,
    SRMFilter,
    WaveletFilter,
    add_stochastic_depth,
    build_model,
    imagenet_file,
    load_checkpoint,
    model_from_checkpoint,
    resolve_pretrained,
    save_checkpoint,
)
from pipeline.scoring import Scorer
from pipeline.training import FaceImages, eval_transform, list_images, predict


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_variant_trains_a_step_on_tiny_inputs(arch):
    torch.manual_seed(0)
    model = build_model(arch).train()
    x, y = torch.randn(4, 3, 48, 48), torch.tensor([0.0, 1.0, 0.0, 1.0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.conv1.weight.detach().clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.conv1.weight)
    assert model.eval()(x).shape == (4, 1)


def test_the_npr_filter_is_the_residual_of_each_2x2_cell():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    r = NPRFilter()(x) * 1.5  # the paper's 2/3 scale undone
    # every pixel minus the top-left pixel of its 2x2 cell: zero there, 1, 4 and 5 elsewhere
    assert r[0, 0, :2, :2].tolist() == [[0.0, 1.0], [4.0, 5.0]]
    assert r[0, 0, 2:, 2:].tolist() == [[0.0, 1.0], [4.0, 5.0]]
    smooth = torch.ones(1, 3, 8, 8) * 0.3
    assert NPRFilter()(smooth).abs().max() == 0  # flat regions (and so faces) cancel out


def test_the_truncated_variant_ends_after_layer2():
    model = build_model("resnet50_layer2_npr")
    assert isinstance(model.layer3, torch.nn.Identity) and isinstance(
        model.layer4, torch.nn.Identity
    )
    assert model.conv1.kernel_size == (3, 3) and model.fc.in_features == 512
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet51")


def test_the_default_recipe_records_itself_and_user_options_win(tmp_path):
    cfg = recipe_config(DEFAULT_RECIPE, data_dir="d", run_dir="r")
    assert cfg.recipe == DEFAULT_RECIPE and cfg.arch == RECIPES[DEFAULT_RECIPE]["arch"]
    mine = recipe_config("npr", data_dir="d", run_dir="r", epochs_full=3, arch="resnet50_npr")
    assert (mine.epochs_full, mine.arch, mine.recipe) == (3, "resnet50_npr", "npr")
    # the recipe's patches only where the input is larger than them
    assert recipe_config("npr", data_dir="d", run_dir="r", image_size=48).train_crop is None
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("best", data_dir="d", run_dir="r")
    assert TrainConfig(data_dir="d", run_dir="r").recipe == "custom"


@pytest.fixture
def faces(tmp_path):
    """A {real,fake} folder of 56 px PNG windows of a real face, and the same windows as
    uint8 arrays by their path."""
    rng = np.random.default_rng(0)
    frame = face_frame()  # BGR, a real portrait
    crops = {}
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
        for i in range(3):
            x, y = rng.integers(40, 100, 2)
            crop = native_window(frame, Box(int(x), int(y), 50, 50), 56, 0.0)
            path = tmp_path / label / f"{i}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            crops[str(path)] = crop
    return tmp_path, crops


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_variant_filter_and_tta_round_trip_and_score_alike_in_training_and_scans(
    faces, tmp_path, tta
):
    folder, crops = faces
    torch.manual_seed(1)
    model = build_model("resnet50_layer2_npr").eval()
    pre = Preprocess(input_size=56, crop="native", tta=tta)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, preprocess=pre, arch="resnet50_layer2_npr", recipe="npr")
    ckpt = load_checkpoint(path)
    assert (ckpt["arch"], ckpt["recipe"], ckpt["preprocess"]) == ("resnet50_layer2_npr", "npr", pre)
    loaded = model_from_checkpoint(ckpt)
    assert isinstance(loaded.input_filter, NPRFilter)
    # training's validation path: the PNGs read back and prepared by eval_transform
    items = list_images(folder)
    dataset = FaceImages(items, eval_transform(pre, resize=False))
    _, trained_scores, _ = predict(loaded, DataLoader(dataset, batch_size=8), "cpu", tta)
    # the scan's path: uint8 crops through the Scorer (BatchNorm folded, bf16 where native)
    scan_crops = np.stack([crops[p] for p, _ in items])
    scorer = Scorer(loaded, ckpt["preprocess"], device="cpu")
    scanned = scorer.score(scan_crops)
    assert np.abs(scanned - trained_scores).max() < 2e-2
    assert scorer.crops_forwarded == len(crops) * (2 if tta == "flip" else 1)
    assert ((scanned >= 0) & (scanned <= 1)).all()


def test_flip_tta_averages_the_face_and_its_mirror(faces):
    crops = np.stack(list(faces[1].values()))
    torch.manual_seed(2)
    model = build_model("resnet50_layer2_npr").eval()
    plain = Scorer(model, Preprocess(input_size=56, crop="native"), device="cpu", precision="fp32")
    flip = Scorer(model, Preprocess(input_size=56, crop="native", tta="flip"), "cpu", 256, "fp32")
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    a, b = plain.score(crops), plain.score(crops[:, :, ::-1])
    expected = 1 / (1 + np.exp(-(logit(a) + logit(b)) / 2))
    assert np.allclose(flip.score(crops), expected, atol=1e-4)


def test_native_window_keeps_pixels_and_shrinks_only_by_whole_factors():
    frame = face_frame()
    h, w = frame.shape[:2]
    small = native_window(frame, Box(100, 100, 40, 40), 64, 0.2)  # 56 px face region fits
    assert np.array_equal(small[:, :, ::-1], frame[88:152, 88:152])  # its own pixels, RGB
    big = native_window(frame, Box(90, 50, 100, 100), 64, 0.2)  # 140 px: shrunk 3x
    block = frame[4:196, 44:236].reshape(64, 3, 64, 3, 3).mean(axis=(1, 3)).round()
    assert np.array_equal(big[:, :, ::-1], block.astype(np.uint8))
    edge = native_window(frame, Box(w - 20, h - 20, 20, 20), 64, 0.0)
    assert edge.shape == (64, 64, 3) and edge[-10:, -10:].max() == 0  # outside the frame: black


def test_block_mean_rounds_as_the_float_mean_does():
    """The whole-number block mean gives the float mean's numbers, ties (half of a grey level,
    a quarter of all 2x2 blocks of noise) rounded to even as numpy and torch round."""
    rng = np.random.default_rng(0)
    for k in (2, 3, 4, 6, 17):  # 17: sums past 16 bits
        image = rng.integers(0, 256, (8 * k, 5 * k, 3), dtype=np.uint8)
        float_mean = image.reshape(8, k, 5, k, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        assert np.array_equal(block_mean(image, k), float_mean), k
    ties = np.array([[[1], [2]], [[2], [2]]], np.uint8)  # 7 / 4 = 1.75 -> 2
    assert block_mean(ties, 2)[0, 0, 0] == 2
    assert block_mean(np.array([[[1], [2]], [[1], [2]]], np.uint8), 2)[0, 0, 0] == 2  # 1.5 -> 2
    assert block_mean(np.array([[[2], [3]], [[2], [3]]], np.uint8), 2)[0, 0, 0] == 2  # 2.5 -> 2


def test_pretrained_auto_takes_cached_imagenet_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    donor = torchvision.models.resnet50(weights=None)  # an ImageNet-shaped file, written here
    path = imagenet_file()
    assert path.startswith(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    torch.save(donor.state_dict(), path)
    warnings = []
    assert resolve_pretrained("resnet50", "auto", warnings.append) == path and not warnings
    model = build_model("resnet50", path)
    assert torch.equal(model.layer3[0].conv1.weight, donor.layer3[0].conv1.weight)
    # the NPR variants read no RGB: ImageNet does not apply, and one line says so
    assert resolve_pretrained("resnet50_layer2_npr", "auto", warnings.append) is None
    assert len(warnings) == 1 and "random weights" in warnings[0]
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model("resnet50_layer2_npr", "imagenet")


def test_pretrained_auto_without_weights_trains_from_random_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet50_Weights.DEFAULT

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    warnings = []
    assert resolve_pretrained("resnet50", "auto", warnings.append) is None
    assert len(warnings) == 1 and "random weights" in warnings[0]
    assert "network unreachable" in warnings[0] and imagenet_file() in warnings[0]
    assert resolve_pretrained("resnet50", "none", warnings.append) == "none"


def test_the_srm_filter_keeps_noise_and_removes_smooth_content():
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    assert NPRFilter()(ramp).abs().max() > 0  # NPR sees a ramp's steps
    srm = SRMFilter()(ramp)[..., 2:-2, 2:-2]  # away from the zero padding
    assert srm.abs().max() < 1e-5  # a linear ramp has no residual left
    noise = torch.randn(1, 3, 32, 32)
    assert SRMFilter()(noise).std() > 0.5 * noise.std()
    assert not list(build_model("resnet50_layer2_srm").state_dict().keys() -
                    build_model("resnet50_layer2").state_dict().keys())  # fmt: skip


def test_the_wavelet_filter_keeps_the_diagonal_band_only():
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    assert WaveletFilter()(ramp).abs().max() < 1e-6  # a ramp has no diagonal detail
    lines = torch.zeros(1, 3, 32, 32)
    lines[..., ::2, :] = 1.0  # horizontal lines: vertical detail, no diagonal
    assert WaveletFilter()(lines).abs().max() < 1e-6
    checker = (torch.arange(32).view(32, 1) + torch.arange(32).view(1, 32)) % 2
    band = WaveletFilter()(checker.float().expand(1, 3, 32, 32))
    assert band.shape == (1, 3, 32, 32)  # back at the input's size
    assert torch.allclose(band, -torch.ones_like(band))  # (a - b - c + d) / 2 of [[0,1],[1,0]]
    noise = torch.randn(1, 3, 33, 31)  # odd sizes come back whole too
    assert WaveletFilter()(noise).shape == noise.shape
    assert not list(build_model("resnet50_layer2_dwt").state_dict().keys() -
                    build_model("resnet50_layer2").state_dict().keys())  # fmt: skip


def test_stochastic_depth_drops_branches_in_training_only():
    torch.manual_seed(0)
    plain = build_model("resnet50_layer2_npr")
    for name, p in plain.named_parameters():  # branches that add something (not zero-init)
        if name.endswith("bn3.weight"):
            torch.nn.init.constant_(p, 1.0)
    dropped = build_model("resnet50_layer2_npr")
    dropped.load_state_dict(plain.state_dict())
    assert add_stochastic_depth(dropped, 0.5) is dropped
    assert dropped.state_dict().keys() == plain.state_dict().keys()  # the checkpoint's names
    x = torch.randn(8, 3, 48, 48)
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), dropped(x))  # scoring: the same network
    plain.train(), dropped.train()
    with torch.no_grad():
        assert not torch.allclose(plain(x), dropped(x))  # training: branches dropped
    with pytest.raises(ValueError, match="stochastic depth"):
        add_stochastic_depth(build_model("resnet50_layer2"), 1.0)
