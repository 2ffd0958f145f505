"""Training pieces, plain PyTorch: face image folders, augmentation, one epoch, evaluation.

Folders hold `real/` and `fake/` images (any depth below them). Label 1 = fake. The Ray Train job
(jobs/train.py) wires these together across workers; tests use them directly.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from pipeline.config import Preprocess, TrainConfig
from pipeline.model import set_backbone_trainable
from pipeline.scoring import native_bf16, tta_logits
from pipeline.selfblend import (
    OUTLINES,
    blend_pair,
    jpeg_quality,
    jpeg_round_trip,
    recoloured,
    similar_faces,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CLASSES = ("real", "fake")  # index = label
CACHE_LIMIT_BYTES = 4 * 1024**3


def list_images(folder: str | os.PathLike, need_fakes: bool = True) -> list[tuple[str, int]]:
    """(path, label) for every image under folder/real and folder/fake, sorted. Without
    `need_fakes` a folder of real images alone (no fake/ folder, or an empty one) will do."""
    folder = os.fspath(folder)
    items = []
    for label, name in enumerate(CLASSES):
        root = os.path.join(folder, name)
        if not os.path.isdir(root):
            if name == "fake" and not need_fakes:
                continue
            raise FileNotFoundError(f"expected a {name}/ folder of images in {folder}")
        # Links followed: a benchmark or a user may gather several sets' folders by links.
        for dirpath, _, files in os.walk(root, followlinks=True):
            for f in files:
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    items.append((os.path.join(dirpath, f), label))
    items.sort()
    counts = [sum(1 for _, y in items if y == k) for k in (0, 1)]
    if counts[0] == 0 or (need_fakes and counts[1] == 0):
        raise FileNotFoundError(
            f"{folder}: need images of both classes, found {counts[0]} real and {counts[1]} fake"
        )
    return items


def source_of(path: str, folder: str) -> str:
    """The source of an image listed from `folder`: its class folder and the first folder under
    it (`real/studio_a`), or the class folder alone for an image lying directly in it."""
    parts = os.path.relpath(path, folder).split(os.sep)
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def source_repeats(items: list[tuple[str, int]], folder: str) -> dict[str, int]:
    """How many times an epoch draws each source's images so that, within each class, every
    source weighs about as much as the largest: round(largest / size), at least once."""
    return _repeats([source_of(path, folder) for path, _ in items])


def _repeats(sources: list[str]) -> dict[str, int]:
    sizes = Counter(sources)
    largest = Counter()
    for source, n in sizes.items():
        label = source.split("/")[0]
        largest[label] = max(largest[label], n)
    return {s: max(1, round(largest[s.split("/")[0]] / n)) for s, n in sorted(sizes.items())}


def balance_sources(items: list[tuple[str, int]], folder: str) -> list[tuple[str, int]]:
    """`items` with each source's images repeated `source_repeats` times (each repeat is drawn
    with its own random augmentation and patch)."""
    sources = [source_of(path, folder) for path, _ in items]
    times = _repeats(sources)
    pairs = zip(items, sources, strict=True)
    return [item for item, source in pairs for _ in range(times[source])]


def load_image(path: str) -> torch.Tensor:
    """(3, H, W) uint8 RGB. OpenCV decodes (torchvision.io's decoders are deprecated)."""
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous()


def build_transform(cfg: TrainConfig, preprocess: Preprocess, train: bool) -> v2.Compose:
    """Augmentation for deepfake training: flips, mild crops, colour, blur and JPEG
    re-compression (`standard`); flips and mild crops (`light`); none. With `resize=False` the
    image keeps its native resolution and crops are cut without resampling, which keeps the
    high-frequency traces that generators leave and that resizing destroys. With `train_crop`
    the network trains on a random patch of that size cut from the input-sized image: many
    different views of few images (a ResNet's global pooling then scores a whole input at
    validation and in the scan as it scored patches)."""
    if not train:
        return eval_transform(preprocess, cfg.resize)
    size = cfg.image_size
    steps: list = []
    if not cfg.resize:
        steps.append(v2.RandomCrop(size, pad_if_needed=True))
    elif cfg.augment != "none":
        steps.append(v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.9, 1.1)))
    else:
        steps += [v2.Resize(size), v2.CenterCrop(size)]
    if cfg.train_crop:
        steps.append(v2.RandomCrop(cfg.train_crop))
    if cfg.augment != "none":
        steps.append(v2.RandomHorizontalFlip())
    if cfg.augment == "standard":
        steps += [
            v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.5),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
            v2.RandomApply([v2.JPEG((50, 95))], p=0.3),
        ]
    return v2.Compose(steps + _to_model_input(preprocess))


def _to_model_input(preprocess: Preprocess) -> list:
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(preprocess.mean), list(preprocess.std)),
    ]


def eval_transform(preprocess: Preprocess, resize: bool = True) -> v2.Compose:
    """Validation and evaluation: the input size, centred, no augmentation."""
    size = preprocess.input_size
    steps = [v2.Resize(size), v2.CenterCrop(size)] if resize else [v2.CenterCrop(size)]
    return v2.Compose(steps + _to_model_input(preprocess))


class Repeated(Dataset):
    """`times` passes over `base` in one epoch, each item drawn afresh (a new random patch)."""

    def __init__(self, base: Dataset, times: int):
        self.base, self.times = base, times

    def __len__(self) -> int:
        return len(self.base) * self.times

    def __getitem__(self, i: int):
        return self.base[i % len(self.base)]


class FaceImages(Dataset):
    """Images with labels; optionally `blend_fraction` x (number of real images) extra
    self-blended fakes made on the fly from the real ones (pipeline/selfblend.py), inside the
    outline of each face's `landmarks` ({path: face_landmarks(...)}, found once and cached by the
    caller). `fixed_blends` (validation) makes blend i the same every epoch (seeded by `seed`
    and i); otherwise a new blend every epoch. While training on blends, each face of the folder
    (real or fake) is recoloured half the time as blends' targets are, so neither colour nor the
    recolouring's own traces (its rounding to whole levels) tell a class apart.
    With `boundaries` an item is (image, label, boundary map, whether the map is known): the
    blend's edge map for a blend, zeros for a real face, unknown for a fake from the folder.
    `jpeg`: the share of items (real, blended and fake alike) re-encoded as JPEG after blending
    (`reencoded`), so that a blend's broken JPEG grid never marks it.
    `pairs` (training with blends, SBI's way): item i of a real face is that face, as the
    blend's target, stacked with its own blend, both cut, flipped, jittered and re-encoded with
    the same draws, so that nothing but the blend tells them apart; a folder's fake is a stack
    of one. Items are then (k, C, H, W) stacks with k labels: load them with `concat_items`.
    `blend_fraction` does not apply (one blend of every real face).
    `donors`: the share of training blends whose pasted face is another real face of the set
    (`selfblend.onto`: Face X-ray's blends of two people) instead of the face itself; with
    `donor_pool` k, one of the k real faces posed most like it (as Face X-ray picks), else any.
    `outlines`: the face regions a blend's mask is drawn from (`selfblend.OUTLINES`)."""

    def __init__(
        self,
        items: list[tuple[str, int]],
        transform=None,
        blend_fraction: float = 0.0,
        cache: bool = False,
        landmarks: dict | None = None,
        fixed_blends: bool = False,
        boundaries: bool = False,
        seed: int = 0,
        jpeg: float = 0.0,
        pairs: bool = False,
        donors: float = 0.0,
        outlines: tuple = OUTLINES["outline"],
        donor_pool: int = 0,
    ):
        self.items = items
        self.outlines = outlines
        self.jpeg, self.pairs, self.donors = jpeg, pairs, donors
        self.transform = transform
        self.reals = [i for i, (_, y) in enumerate(items) if y == 0]
        self.n_blend = 0 if pairs else round(blend_fraction * len(self.reals))
        self.landmarks = landmarks or {}
        self.fixed_blends, self.boundaries, self.seed = fixed_blends, boundaries, seed
        self.cache: list[torch.Tensor] | None = None
        if cache and items and self._cache_bytes() <= CACHE_LIMIT_BYTES:
            # Decoded once, before DataLoader workers fork, so they share the memory; an
            # image listed several times (--balance-sources) is held once.
            decoded = {p: load_image(p) for p in dict.fromkeys(p for p, _ in items)}
            self.cache = [decoded[p] for p, _ in items]
        self.near: dict[str, list[int] | None] = {}
        if donors and donor_pool:
            self.near = self._posed_alike(donor_pool)

    def _posed_alike(self, k: int) -> dict[str, list[int] | None]:
        """For each real image, the items of the `k` other real images posed most like it
        (`selfblend.similar_faces`; an image listed several times counts once)."""
        first: dict[str, int] = {}
        for r in self.reals:
            first.setdefault(self.items[r][0], r)
        paths = list(first)
        near = similar_faces([self.landmarks.get(p) for p in paths], k)
        return {
            p: None if n is None else [first[paths[j]] for j in n]
            for p, n in zip(paths, near, strict=True)
        }

    def _cache_bytes(self) -> int:
        unique = len({p for p, _ in self.items})
        return load_image(self.items[0][0]).numel() * unique

    def __len__(self) -> int:
        return len(self.items) + self.n_blend

    def labels(self) -> np.ndarray:
        return np.array([y for _, y in self.items] + [1] * self.n_blend, np.int64)

    def _image(self, i: int) -> torch.Tensor:
        return self.cache[i] if self.cache is not None else load_image(self.items[i][0])

    def _hwc(self, i: int) -> np.ndarray:
        """Image i as the blends take it: (H, W, 3) uint8, contiguous."""
        return np.ascontiguousarray(self._image(i).permute(1, 2, 0).numpy())

    def _rng(self, i: int, stream: int = 0) -> np.random.Generator:
        """Item i's random draws: the same every epoch with `fixed_blends` (one stream for the
        blend, one for the re-encoding, one for the donor), else new ones."""
        if self.fixed_blends:
            return np.random.default_rng((self.seed, i, stream) if stream else (self.seed, i))
        # Seeded from torch's generator, which DataLoader seeds per worker and epoch.
        return np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))

    def __getitem__(self, i: int):
        if self.pairs:
            return self._pair(i)
        boundary = known = None
        if i < len(self.items):
            img, label = self._image(i), self.items[i][1]
            if self.n_blend and not self.fixed_blends:  # reals and the folder's fakes alike
                hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
                img = torch.from_numpy(recoloured(hwc, self._rng(i))).permute(2, 0, 1)
            known = label == 0  # a real face has no blend edge; a folder's fake, unknown
            if self.boundaries:
                boundary = torch.zeros(img.shape[-2:], dtype=torch.float32)
        else:
            real = self.reals[(i - len(self.items)) % len(self.reals)]
            hwc = self._hwc(real)
            landmarks = self.landmarks.get(self.items[real][0])
            donor = self._donor(i, real)
            fake, edge = blend_pair(hwc, self._rng(i), landmarks, donor, self.outlines)[1:]
            img, label = torch.from_numpy(fake).permute(2, 0, 1), 1
            known, boundary = True, torch.from_numpy(edge)
        quality = self._jpeg_quality(i)
        if quality is not None:
            hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
            img = torch.from_numpy(jpeg_round_trip(hwc, quality)).permute(2, 0, 1)
        return self._transformed(img, label, None if boundary is None else boundary[None], known)

    def _donor(self, i: int, real: int) -> tuple[np.ndarray, dict | None] | None:
        """The face pasted into blend i of real face `real`: another real face and its landmarks
        (`donors` of the time, drawn from the real faces, or from those posed most like it
        with `donor_pool`), or None for a self-blend."""
        if not self.donors or len(self.reals) < 2:
            return None
        rng = self._rng(i, stream=2)
        if rng.random() >= self.donors:
            return None
        near = self.near.get(self.items[real][0])
        if near:
            other = near[int(rng.integers(len(near)))]
        else:
            other = self.reals[int(rng.integers(len(self.reals) - 1))]
            other = self.reals[-1] if other == real else other  # never the face itself
        return self._hwc(other), self.landmarks.get(self.items[other][0])

    def _jpeg_quality(self, i: int) -> int | None:
        """The JPEG quality item i is re-encoded at after blending (`jpeg` of the time, drawn
        as `selfblend.reencoded` draws it; one for a face and its blend alike), or None."""
        if not self.jpeg:
            return None
        rng = self._rng(i, stream=1)
        return jpeg_quality(rng) if rng.random() < self.jpeg else None

    def _transformed(self, img: torch.Tensor, label, maps: torch.Tensor | None, known):
        """The item as training reads it: the image through the transform, and with
        `boundaries` its boundary maps (a leading axis of one map per image) moved by the same
        crops and flips, and whether they are known."""
        if not self.boundaries:
            return (self.transform(img) if self.transform is not None else img), label
        mask = tv_tensors.Mask(maps)
        if self.transform is not None:  # one set of draws for the faces and their maps
            img, mask = self.transform(img, mask)
        return img, label, mask.as_subclass(torch.Tensor), known

    def _pair(self, i: int):
        """Item i with `pairs`: a real face and its blend, or a folder's fake alone."""
        label = self.items[i][1]
        hwc = self._hwc(i)
        if label == 0:
            landmarks = self.landmarks.get(self.items[i][0])
            donor = self._donor(i, i)
            real, fake, edge = blend_pair(hwc, self._rng(i), landmarks, donor, self.outlines)
            faces, labels, maps = [real, fake], [0, 1], [np.zeros_like(edge), edge]
            known = [True, True]
        else:  # a fake from the folder, recoloured as reals are; where its blend lies: unknown
            faces, labels, known = [recoloured(hwc, self._rng(i))], [1], [False]
            maps = [np.zeros(hwc.shape[:2], np.float32)]
        quality = self._jpeg_quality(i)
        if quality is not None:
            faces = [jpeg_round_trip(face, quality) for face in faces]
        stack = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2)
        targets = torch.tensor(labels, dtype=torch.int64)
        edges = torch.from_numpy(np.stack(maps))[:, None]
        return self._transformed(stack, targets, edges, torch.tensor(known))


def concat_items(batch: list[tuple]) -> tuple:
    """A DataLoader's collate for FaceImages(pairs=True): each field's stacks joined along the
    first axis, so a batch of n items holds up to 2n faces."""
    return tuple(torch.cat(field) for field in zip(*batch, strict=True))


def set_phase(model: nn.Module, phase: str) -> None:
    """'frozen': only the head learns, and the backbone's BatchNorm statistics stay put;
    'full': everything learns."""
    frozen = phase == "frozen"
    set_backbone_trainable(model, not frozen)
    model.train()
    if frozen:
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not name.startswith("fc"):
                module.eval()


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """Linear warm-up, then cosine decay to 1% of the base rate, stepped every batch."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def resume_schedule(
    optimizer, scheduler, lr: float, steps_done: int, weight_decay: float | None = None
) -> None:
    """Call after loading a killed run's optimizer and scheduler state: the schedule goes to
    where this run's own settings put it after `steps_done` batches of the phase, at this run's
    base rate. The killed run may have had another batch size or worker count (so another
    number of steps an epoch: its step count would put the cosine too far or not far enough)
    or another --lr or --weight-decay. AdamW's moments and step counts stay as restored."""
    lrs = [lr * fn(steps_done) for fn in scheduler.lr_lambdas]
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    scheduler.last_epoch = steps_done
    scheduler._last_lr = lrs
    for group, value in zip(optimizer.param_groups, lrs, strict=True):
        group["initial_lr"] = lr
        group["lr"] = value
        if weight_decay is not None:
            group["weight_decay"] = weight_decay


def fast_path(device: torch.device) -> bool:
    """bf16 autocast and channels_last: on CUDA, and on CPUs with native bf16 (AVX512-BF16,
    AMX), where they train about twice as fast as fp32; elsewhere fp32."""
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and native_bf16(device))


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast_path(device))


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor, mix: str, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp (Zhang et al., 2018: two faces blended, labels in the same proportion) or CutMix
    (Yun et al., 2019: a box of one face pasted into another, labels by area) with a partner
    drawn from the same batch; the mixing weight ~ Beta(alpha, alpha). Labels are floats."""
    if mix == "none" or len(images) < 2:
        return images, labels
    lam = float(np.random.beta(alpha, alpha))
    perm = torch.randperm(len(images), device=images.device)
    if mix == "mixup":
        return lam * images + (1 - lam) * images[perm], lam * labels + (1 - lam) * labels[perm]
    h, w = images.shape[-2:]
    ch, cw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    y, x = np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1)
    images = images.clone()
    images[..., y : y + ch, x : x + cw] = images[perm][..., y : y + ch, x : x + cw]
    lam = 1 - ch * cw / (h * w)  # the share of the face that stayed
    return images, lam * labels + (1 - lam) * labels[perm]


def make_ema(model: nn.Module, decay: float):
    """An exponential moving average of the weights (and BatchNorm statistics), or None for
    decay 0: often a steadier model than the last step's weights for small data sets."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader: Iterable,
    device: torch.device,
    *,
    label_smoothing: float = 0.0,
    mix: str = "none",
    mix_alpha: float = 0.4,
    ema=None,
    boundary_weight: float = 0.0,
) -> float:
    """One pass over `loader`; returns the mean training loss. The caller sets the phase.
    With a BoundaryModel (its batches carry boundary maps) the loss adds `boundary_weight` x
    the boundary head's per-pixel BCE over the faces whose map is known.
    `label_smoothing` pulls the targets towards 0.5 by that much (0.1: 0.05 and 0.95); `mix`
    mixes each batch (mix_batch); `ema` (make_ema) is updated after every step. Raises
    FloatingPointError when the loss stopped being finite (the run diverged): before the
    epoch's weights can reach a checkpoint."""
    device = torch.device(device)
    # Summed on the device: reading the loss every step would wait for the GPU every step.
    total, count = torch.zeros((), device=device), 0
    for batch in loader:
        images, labels = batch[0], batch[1]
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).float()
        images, labels = mix_batch(images, labels, mix, mix_alpha)
        if label_smoothing:
            labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
        if fast_path(device):
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            out = model(images)
        logits, edges = out if isinstance(out, tuple) else (out, None)
        loss = criterion(logits.squeeze(1).float(), labels)
        if edges is not None and boundary_weight:
            loss = loss + boundary_weight * boundary_loss(edges.float(), batch[2], batch[3])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:  # of the classifier, not of a boundary head around it
            inner = getattr(model, "module", model)
            ema.update_parameters(getattr(inner, "net", inner))
        total += loss.detach() * len(labels)
        count += len(labels)
    mean = float(total) / max(1, count)
    if not math.isfinite(mean):
        raise FloatingPointError(
            f"the training loss became {mean}: the run diverged; "
            "lower the learning rate (--lr, --lr-full) and run again"
        )
    return mean


def boundary_loss(predicted: torch.Tensor, maps: torch.Tensor, known: torch.Tensor):
    """Per-pixel BCE of the boundary head's (N, 1, h, w) logits against the blend edge maps
    (N, 1, H, W), averaged to the head's resolution, over the faces whose map is known."""
    known = known.to(predicted.device).bool()
    if not known.any():
        return predicted.sum() * 0.0  # keeps the head in the graph (DDP wants every parameter)
    target = nn.functional.adaptive_avg_pool2d(
        maps.to(predicted.device).float(), predicted.shape[-2:]
    )
    return nn.functional.binary_cross_entropy_with_logits(predicted[known], target[known])


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device, tta: str = "none"):
    """(labels, probabilities of fake, mean BCE loss) over `loader`, each face scored under the
    test-time augmentation `tta` exactly as the scan scores it."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    labels, scores, losses = [], [], []
    for images, y, *_ in loader:
        images = images.to(device, non_blocking=True)
        if fast_path(device):
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            logits = tta_logits(model, images, tta).squeeze(1).float()
        y = y.to(device).float()
        losses.append(nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
        labels.append(y.cpu())
        scores.append(torch.sigmoid(logits).cpu())
    model.train(was_training)
    if not labels:
        return np.empty(0, np.int64), np.empty(0, np.float32), math.nan
    y = torch.cat(labels).numpy().astype(np.int64)
    return y, torch.cat(scores).numpy(), float(torch.stack(losses).sum()) / len(y)
