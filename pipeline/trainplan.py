"""What a training run trains on and how, decided on the driver before any worker starts:
its folders, the preprocessing the scan will use, self-blending of real-only data, the
phases of its schedule, and the face outlines the blends follow."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

from torch.utils.data import Dataset

from pipeline.config import Preprocess, TrainConfig
from pipeline.rundir import atomic_text
from pipeline.selfblend import OUTLINES
from pipeline.training import (
    FaceImages,
    Repeated,
    balance_sources,
    build_transform,
    concat_items,
    list_images,
    source_repeats,
)


def split_dirs(cfg: TrainConfig) -> tuple[str, str]:
    """(train folder, validation folder) of a data set laid out as DATA_DIR/{train,val}/
    {real,fake}, or DATA_DIR/{real,fake} with --val."""
    train = os.path.join(cfg.data_dir, "train")
    if not os.path.isdir(train):
        train = cfg.data_dir
    val = cfg.val_dir or os.path.join(cfg.data_dir, "val")
    if not os.path.isdir(val):
        raise FileNotFoundError(
            f"no validation folder: expected {val}/{{real,fake}} (or give --val DIR)"
        )
    return train, val


def preprocess_for(cfg: TrainConfig) -> Preprocess:
    """The scan's preprocessing, at the trained input size; the extraction settings of the
    training faces win when FACES_DIR/preprocess.json (written by extract-faces) says them."""

    parent = os.path.dirname(os.path.normpath(cfg.data_dir))
    for folder in (cfg.data_dir, os.path.join(cfg.data_dir, "train"), parent):
        path = os.path.join(folder, "preprocess.json")
        if os.path.isfile(path):
            with open(path) as f:
                extracted = Preprocess.from_dict(json.load(f))
            settings = {**extracted.to_dict(), "input_size": cfg.image_size, "tta": cfg.tta}
            if extracted.crop == "native":
                check_native_faces(cfg, extracted)
            elif not cfg.resize and cfg.image_size != extracted.input_size:
                settings["margin"] = native_margin(cfg.image_size, extracted)
            return Preprocess.from_dict(settings)
    return Preprocess(
        input_size=cfg.image_size, crop="resize" if cfg.resize else "native", tta=cfg.tta
    )


def check_native_faces(cfg: TrainConfig, extracted: Preprocess) -> None:
    """Faces extracted as native windows are trained on as they are: the scan cuts the same
    window (same size, same whole-factor shrink) only at the size they were extracted at."""
    if cfg.resize or cfg.image_size != extracted.input_size:
        raise ValueError(
            f"these faces were extracted as native {extracted.input_size} px windows: train "
            f"on them with --no-resize --image-size {extracted.input_size} (a recipe may cut "
            "smaller --train-crop patches), or extract them again at another --image-size"
        )


def native_margin(image_size: int, extracted: Preprocess) -> float:
    """With --no-resize the network sees the central `image_size` pixels of the extracted
    crops, at their scale: the margin with which the scan cuts that same region of a face
    (and, resizing it to `image_size`, reaches that same scale)."""
    if image_size > extracted.input_size:
        raise ValueError(
            f"--no-resize trains on the faces' own {extracted.input_size} px crops: "
            f"--image-size {image_size} would pad them with black the scan never shows; "
            f"use at most {extracted.input_size}, or extract-faces --image-size {image_size}"
        )
    side = (1.0 + 2.0 * extracted.margin) * image_size / extracted.input_size
    return (side - 1.0) / 2.0


def phase_of(cfg: TrainConfig, epoch: int) -> str:
    return "frozen" if epoch < cfg.epochs_frozen else "full"


def phase_epochs(cfg: TrainConfig, phase: str) -> int:
    return cfg.epochs_frozen if phase == "frozen" else cfg.epochs_full


def phase_start(cfg: TrainConfig, phase: str) -> int:
    return 0 if phase == "frozen" else cfg.epochs_frozen


def resolve_self_blend(cfg: TrainConfig, log: Callable[[str], None]):
    """(cfg with self_blend decided, the real images whose blends the run makes). A training
    folder without fakes trains on self-blends of its real faces unless self-blending was
    turned off, which is refused: a model that never saw a fake cannot learn to find one."""
    train_dir, val_dir = split_dirs(cfg)
    train = list_images(train_dir, need_fakes=False)
    val = list_images(val_dir, need_fakes=False)
    has_fakes = any(y for _, y in train)
    if not has_fakes and cfg.self_blend is False:
        raise ValueError(
            f"{train_dir} holds real faces only and self-blending is off (--no-self-blend): a "
            "model that never saw a fake cannot learn to find one. Add fake/ images, or train "
            "without --no-self-blend (self-blended fakes made from the real faces)"
        )
    self_blend = cfg.self_blend if cfg.self_blend is not None else not has_fakes
    if not has_fakes:
        log(
            f"no fake images in {train_dir}: training on its {len(train)} real faces and a "
            f"self-blended fake of each ({describe_blends(cfg)})"
        )
    val_fakes = any(y for _, y in val)
    if not val_fakes:
        if not self_blend:
            raise ValueError(
                f"{val_dir}: found {len(val)} real and 0 fake images to validate on; add fake/ "
                "images (or --self-blend: validate against blends of the real faces)"
            )
        log(f"no fake images in {val_dir}: validating against a seeded blend of each real face")
    cfg = dataclasses.replace(cfg, self_blend=self_blend)
    if not self_blend:
        return cfg, []
    reals = [p for p, y in train if y == 0]
    return cfg, reals + ([] if val_fakes else [p for p, y in val if y == 0])


def read_landmarks(path: str | None) -> dict:
    """{path: landmarks or None} from a LandmarkCache's file ({} without one)."""
    return {p: v["face"] for p, v in LandmarkCache(path).known.items()}


class LandmarkCache:
    """The face outlines found for training images, in a JSON file of {path: {"stamp": its size
    and time when found, "face": landmarks or None}}, so that a run (or a resumed one) finds
    them only for images that are new or changed since."""

    def __init__(self, path: str | None):
        self.path = path
        self.known: dict = {}
        if path and os.path.isfile(path):
            with open(path) as f:
                self.known = json.load(f)
        self.stamps: dict[str, str] = {}

    def missing(self, paths: list[str]) -> list[str]:
        """Those of `paths` whose outlines are not known for the file as it is now. The stamps
        are taken now, before the finding: a file changed meanwhile is found again next time."""
        self.stamps.update({p: f"{os.path.getsize(p)}:{os.path.getmtime(p)}" for p in paths})
        return [p for p in paths if self.known.get(p, {}).get("stamp") != self.stamps[p]]

    def add(self, path: str, face: dict | None) -> None:
        """The outlines found for one of the paths `missing` returned."""
        self.known[path] = {"stamp": self.stamps[path], "face": face}

    def save(self, paths: list[str]) -> None:
        """Write the file, holding `paths` only (images no longer trained on drop out)."""
        atomic_text(self.path, json.dumps({p: self.known[p] for p in paths}))


def describe_balance(cfg: TrainConfig) -> str:
    """One log line: how --balance-sources draws the training folder's sources."""
    folder = split_dirs(cfg)[0]
    times = source_repeats(list_images(folder, need_fakes=False), folder)
    classes = [source.split("/")[0] for source in times]
    if len(set(classes)) == len(classes):
        return "--balance-sources: each class has one source folder; nothing to balance"
    drawn = ", ".join(f"{source} x{n}" for source, n in times.items())
    return f"balancing {len(times)} source folders: {drawn}"


def describe_blends(cfg: TrainConfig) -> str:
    """The training log's words for the blends a run makes."""
    made = "a new blend every epoch"
    if cfg.blend_pairs:
        made += ", beside its face in the same batch"
    if not cfg.blend_donors:
        return made
    donors = f"{cfg.blend_donors:.0%} of them pasting another real face"
    if cfg.blend_donor_pool:
        donors += f" (one of the {cfg.blend_donor_pool} posed most alike)"
    return f"{made}; {donors}"


def blend_outlines(cfg: TrainConfig) -> tuple:
    """The face regions the run's blend masks are drawn from (selfblend.OUTLINES; the ellipse
    takes no landmarks, so no region)."""
    return OUTLINES.get(cfg.blend_mask, OUTLINES["outline"])


def training_set(cfg: TrainConfig, preprocess: Preprocess, landmarks: dict) -> Dataset:
    """The training faces with their transform and, with self-blending, a new blend of each
    real face every epoch (with `blend_pairs`, beside its face: items are stacks, loaded with
    `loader_options`); with --train-crop, each image several times an epoch."""
    folder = split_dirs(cfg)[0]
    items = list_images(folder, need_fakes=False)
    if cfg.balance_sources:
        items = balance_sources(items, folder)
    images = FaceImages(
        items,
        build_transform(cfg, preprocess, train=True),
        blend_fraction=cfg.self_blend_fraction if cfg.self_blend else 0.0,
        cache=cfg.cache_images,
        landmarks=landmarks,
        boundaries=cfg.boundary_head,
        jpeg=cfg.blend_jpeg if cfg.self_blend else 0.0,
        pairs=cfg.paired_blends,
        donors=cfg.blend_donors if cfg.self_blend else 0.0,
        outlines=blend_outlines(cfg),
        donor_pool=cfg.blend_donor_pool,
    )
    return Repeated(images, cfg.patches_per_image) if cfg.train_crop else images


def loader_options(cfg: TrainConfig) -> dict:
    """The training DataLoader's batch size and collate: with `blend_pairs` an item is a face
    and its blend, so a batch of batch_size faces is batch_size / 2 items joined by
    `concat_items`."""
    if cfg.paired_blends:
        return {"batch_size": max(1, cfg.batch_size // 2), "collate_fn": concat_items}
    return {"batch_size": cfg.batch_size}


def validation_set(cfg: TrainConfig, preprocess: Preprocess, landmarks: dict) -> Dataset:
    """The validation faces, whole; a val/ without fakes is scored against seeded blends of its
    real faces (the same every epoch)."""
    items = list_images(split_dirs(cfg)[1], need_fakes=False)
    blends = not any(y for _, y in items)
    return FaceImages(
        items,
        build_transform(cfg, preprocess, False),
        blend_fraction=1.0 if blends else 0.0,
        cache=cfg.cache_images,
        landmarks=landmarks,
        fixed_blends=True,
        seed=cfg.seed,
        jpeg=cfg.blend_jpeg if blends else 0.0,
        outlines=blend_outlines(cfg),
    )
