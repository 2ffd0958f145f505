"""The classifier: a registry of architectures, freezing, and checkpoints.

A checkpoint is one dict saved with torch.save and read back with `weights_only=True` (no
pickled code runs on load). Besides the weights it carries the preprocessing the model was
trained with and its decision threshold, so the scan crops and normalises exactly as training did.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torchvision
from torch import nn

from pipeline.config import Preprocess

CHECKPOINT_FORMAT = "deepfake-pipeline/checkpoint-v1"


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, not ours, or inconsistent."""


class NPRFilter(nn.Module):
    """Neighbouring pixel relationships (Tan et al., CVPR 2024, `NPR-DeepfakeDetection`): the
    image minus its nearest-neighbour down- then up-sampled self, i.e. every pixel minus the
    top-left pixel of its 2x2 cell. Generators that upsample leave a fixed pattern there; faces,
    light and framing mostly cancel out. The 2/3 scale is the paper's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        down = nn.functional.interpolate(x, scale_factor=0.5, mode="nearest")
        up = nn.functional.interpolate(down, size=(h, w), mode="nearest")
        return (x - up) * (2.0 / 3.0)


class SRMFilter(nn.Module):
    """The steganalysis rich model's 5x5 "KV" high-pass kernel (Fridrich & Kodovsky, 2012),
    on each colour channel alone: the noise residual that image forensics (RGB-N, and many
    face-forgery detectors since) read instead of the content."""

    def __init__(self):
        super().__init__()
        kv = torch.tensor(
            [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
             [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], dtype=torch.float32,
        ) / 12.0  # fmt: skip
        # A buffer, not a parameter: fixed, and left out of the state dict (persistent=False)
        # so that checkpoints keep torchvision's names only.
        self.register_buffer("kernel", kv.expand(3, 1, 5, 5).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.kernel.to(x.dtype), padding=2, groups=3)


class WaveletFilter(nn.Module):
    """The diagonal high band of a one-level wavelet transform, brought back to the input's
    size: SAFE's input (Li et al., KDD 2025, `Ouxiang-Li/SAFE`: the HH band of a `bior1.3`
    transform, resized bilinearly). bior1.3's analysis high-pass has two non-zero taps, so its
    HH band is Haar's: (a - b - c + d) / 2 over each 2x2 cell [[a, b], [c, d]], on each colour
    channel alone. Smooth content and straight edges cancel; what is left is the pixel-level
    checkerboard that resampling and blending disturb."""

    def __init__(self):
        super().__init__()
        hh = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / 2.0
        self.register_buffer("kernel", hh.expand(3, 1, 2, 2).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        band = nn.functional.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=3)
        return nn.functional.interpolate(band, size=(h, w), mode="bilinear", align_corners=False)


INPUT_FILTERS: dict[str, Callable[[], nn.Module]] = {
    "rgb": nn.Identity,
    "npr": NPRFilter,
    "srm": SRMFilter,
    "dwt": WaveletFilter,
}


class FilteredResNet(torchvision.models.ResNet):
    """A torchvision ResNet-50 that reads a fixed (parameter-free) filter of its input. The
    filter holds no weights, so the state dict keeps torchvision's names: ImageNet weights
    load into it, and Grad-CAM still finds `layer4`."""

    def __init__(self, input_filter: str, **kwargs):
        super().__init__(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3], **kwargs)
        self.input_filter = INPUT_FILTERS[input_filter]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_impl(self.input_filter(x))


def _resnet50(input_filter: str, num_outputs: int) -> nn.Module:
    # Zero-initialised last BatchNorm of each residual block: every block starts as the identity,
    # so a random network gives moderate logits (instead of saturated ones) and trains from
    # scratch more stably (Goyal et al., 2017).
    model = FilteredResNet(input_filter, zero_init_residual=True)
    model.fc = nn.Linear(model.fc.in_features, num_outputs)
    return model


def _resnet50_layer2(input_filter: str, num_outputs: int) -> nn.Module:
    """ResNet-50 cut after layer2, with a 3x3 stride-2 stem: the NPR paper's detector (1.4M
    weights against 23.5M). Shallow and with a small receptive field, it reads local pixel
    statistics rather than faces, which is what carries over to unseen generators. layer3 and
    layer4 become identities, so the module names stay torchvision's."""
    model = _resnet50(input_filter, num_outputs)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    model.layer3, model.layer4 = nn.Identity(), nn.Identity()
    model.fc = nn.Linear(512, num_outputs)
    return model


def add_stochastic_depth(model: nn.Module, rate: float) -> nn.Module:
    """Stochastic depth (Huang et al., 2016), for training: in train mode each residual
    block's branch is dropped for a whole face with a probability that rises linearly with
    depth to `rate` at the last block (kept branches are scaled by 1/(1-p)); in eval mode the
    network is unchanged. Done with forward hooks, not new modules, so the state dict keeps
    torchvision's names and a checkpoint scores the same without them. Returns `model`."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"stochastic depth rate must lie in [0, 1), not {rate}")
    if not rate:
        return model
    blocks = [m for m in model.modules() if isinstance(m, torchvision.models.resnet.Bottleneck)]
    for i, block in enumerate(blocks, start=1):
        block.bn3.register_forward_hook(partial(_drop_branch, rate * i / len(blocks)))
    return model


def _drop_branch(p: float, module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    return torchvision.ops.stochastic_depth(output, p, "row", training=module.training)


class BoundaryModel(nn.Module):
    """A classifier with a boundary head for self-blended training (Face X-ray, LAA-Net): a
    small convolution on layer2's features (stride 8, 512 channels in every variant) predicts,
    per position, whether a blend's edge passes there. Training only: the checkpoint's model is
    `net`, and the scan and the page score it alone; the head is kept in last.pt for resuming."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.head = nn.Sequential(
            nn.Conv2d(512, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(64, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = {}
        hook = self.net.layer2.register_forward_hook(
            lambda _module, _inputs, output: features.__setitem__("layer2", output)
        )
        try:
            logits = self.net(x)
        finally:
            hook.remove()
        return logits, self.head(features["layer2"])


@dataclass(frozen=True)
class Variant:
    """One registered classifier: a ResNet-50 family body and the input filter it reads."""

    body: Callable[[str, int], nn.Module]
    input_filter: str
    imagenet: bool  # whether torchvision's ImageNet weights fit and mean something


# Every name a checkpoint's `arch` can hold. The name records the input filter too, so a
# checkpoint alone rebuilds the network that was trained, filter included.
MODELS: dict[str, Variant] = {
    "resnet50": Variant(_resnet50, "rgb", imagenet=True),
    "resnet50_npr": Variant(_resnet50, "npr", imagenet=False),
    "resnet50_layer2": Variant(_resnet50_layer2, "rgb", imagenet=False),
    "resnet50_layer2_npr": Variant(_resnet50_layer2, "npr", imagenet=False),
    "resnet50_layer2_srm": Variant(_resnet50_layer2, "srm", imagenet=False),
    "resnet50_layer2_dwt": Variant(_resnet50_layer2, "dwt", imagenet=False),
}
HEAD_PREFIX = "fc."


def variant(arch: str) -> Variant:
    try:
        return MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(MODELS)}") from None


def build_model(
    arch: str = "resnet50", pretrained: str | None = None, num_outputs: int = 1
) -> nn.Module:
    """A real/fake classifier with one output logit (sigmoid -> probability of fake).

    pretrained: None or "none" for random weights; "imagenet" for torchvision's ImageNet weights
    (downloaded once into torch's hub folder, or put there by hand when offline); or a path to a
    state dict or one of our checkpoints. The classification head is always new unless the file
    is one of our checkpoints of the same architecture.
    """
    spec = variant(arch)
    model = spec.body(spec.input_filter, num_outputs)
    if pretrained in (None, "", "none"):
        return model
    if pretrained == "imagenet":
        if not spec.imagenet:
            raise CheckpointError(f"ImageNet weights do not fit {arch}: {IMAGENET_NOTE}")
        state = _imagenet_state()
    else:
        state = _state_from_file(pretrained)
    _load_backbone(model, state, HEAD_PREFIX)
    return model


IMAGENET_NOTE = (
    "ImageNet weights were learned on RGB photos by the whole network; this variant reads a "
    "high-pass residual or is cut after layer2 with another stem"
)


def imagenet_file() -> str:
    """Where torch keeps torchvision's ResNet-50 ImageNet weights once they are fetched (under
    $TORCH_HOME, by default ~/.cache/torch)."""
    weights = torchvision.models.ResNet50_Weights.DEFAULT
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def resolve_pretrained(
    arch: str, pretrained: str | None, warn: Callable[[str], None]
) -> str | None:
    """`auto`: torchvision's ImageNet weights where they fit the variant and are cached or can
    be fetched (the file's path), else None (random weights) with one line to `warn`. Other
    values pass through unchanged."""
    if pretrained != "auto":
        return pretrained
    if not variant(arch).imagenet:
        warn(f"--pretrained auto: training {arch} from random weights ({IMAGENET_NOTE})")
        return None
    path = imagenet_file()
    if not os.path.isfile(path):
        try:
            _imagenet_state(timeout_s=20.0)  # fetches it into torch's cache
        except CheckpointError as exc:
            warn(f"--pretrained auto: training from random weights: {exc}")
            return None
    return path


def _imagenet_state(timeout_s: float | None = None) -> dict:
    weights = torchvision.models.ResNet50_Weights.DEFAULT
    target = imagenet_file()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # offline, a fetch fails in seconds, not minutes
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # urllib raises several types; all mean "not available here"
        raise CheckpointError(
            f"ImageNet weights are not available ({type(exc).__name__}: {exc}). "
            f"Offline, download {weights.url} elsewhere and put it at {target}, "
            "or pass the file's path instead of 'imagenet'."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _state_from_file(path: str) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["model"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise CheckpointError(f"{path} holds neither a state dict nor a deepfake-pipeline checkpoint")


def _load_backbone(model: nn.Module, state: dict, head_prefix: str) -> None:
    """Load every tensor whose name and shape match; the head is left as built when they do not
    (an ImageNet head has 1000 outputs). Keys saved from DataParallel/DDP lose their prefix."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith(head_prefix)]
    if missing:
        raise CheckpointError(
            f"weights do not fit the model: {len(missing)} tensors missing, e.g. {missing[:3]}"
        )
    model.load_state_dict(usable, strict=False)


def set_backbone_trainable(
    model: nn.Module, trainable: bool, head_prefix: str = HEAD_PREFIX
) -> None:
    """Freeze (or unfreeze) everything but the head. Frozen BatchNorm layers still update their
    running statistics in train mode; the training loop puts them in eval mode while frozen."""
    for name, param in model.named_parameters():
        param.requires_grad = trainable or name.startswith(head_prefix)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm that only follows a convolution into that convolution's weights and
    bias, in place, for inference: the same outputs with one pass over the activations fewer
    per convolution (ResNet-50 in bf16 scores 1.18-1.26x the crops a second on the 2-core dev
    box). The module tree keeps its names (Grad-CAM still hooks `layer4`); the BatchNorms
    become Identity, so the folded model is for evaluation only. Returns the model."""
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    graph = symbolic_trace(model).graph
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in graph.nodes:
        src = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and len(src.users) == 1  # nothing else reads the unnormalised output
            and calls[src.target] == 1 == calls[node.target]  # modules used once
            and isinstance(model.get_submodule(node.target), nn.BatchNorm2d)
            and isinstance(model.get_submodule(src.target), nn.Conv2d)
        ):
            continue
        conv, bn = model.get_submodule(src.target), model.get_submodule(node.target)
        _replace(model, src.target, fuse_conv_bn_eval(conv, bn))
        _replace(model, node.target, nn.Identity())
    return model


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    preprocess: Preprocess,
    arch: str = "resnet50",
    threshold: float = 0.5,
    **extra,
) -> None:
    """Write {format, arch, model, preprocess, threshold, **extra} atomically: to a temporary
    file in the same folder, then os.replace, so a crash never leaves half a checkpoint."""
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "input_filter": variant(arch).input_filter,  # for readers: the arch implies it
        "model": state,
        "preprocess": preprocess.to_dict(),
        "threshold": float(threshold),
        **extra,
    }
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint; raises CheckpointError with a message a user can act on."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch file, corrupt, or holding objects "
            f"other than tensors and plain data ({type(exc).__name__})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a deepfake-pipeline checkpoint (expected format {CHECKPOINT_FORMAT}); "
            "train one with `deepfake train`"
        )
    if ckpt.get("arch") not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {ckpt.get('arch')!r}")
    try:
        ckpt["preprocess"] = Preprocess.from_dict(ckpt["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad preprocessing settings: {exc}") from exc
    ckpt["model_id"] = file_id(path)
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    model = build_model(ckpt["arch"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit {ckpt['arch']}: {exc}") from exc
    return model.eval()


def file_id(path: str | os.PathLike) -> str:
    """A short content hash: the same file scores the same way wherever it lies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
