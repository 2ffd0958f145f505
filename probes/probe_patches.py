"""Patch-level training probe (a recipe experiment, not the product's training job): trains a
ResNet-50 from random weights on random native-resolution patches of SET/train (no resizing,
so the pixels the camera or generator made reach the network), and scores each SET/val image
by averaging 16 patches on a 4x4 grid and (unless --no-whole-image) by one pass over the whole
image at its native size, which is how the scan would use such a model. Needs a GPU to be quick
(a 2-core CPU trains about 100 64 px patches a second); prints a line per fifth.

    python probes/probe_patches.py ../shared/data/faces/ffhq_stylegan --patch 128 \\
        --batch 64 --steps 1000 --lr 1e-3 [--stem plain|full-res]

`--stem full-res` removes the stem's downsampling (conv1 stride 1, no max-pool), so the
finest frequencies survive into the first residual blocks (16x the compute).

`--pretrain OTHER_SET_DIR` (repeatable) with `--pretrain-steps N` first trains the same way on
the other sets' train splits (labelled real/fake, patches drawn from each set in proportion to
its size), reports SET/val, then trains on SET with a fresh optimizer and schedule: whether
other kinds of fakes teach features that carry over.
"""

from __future__ import annotations

import os
import time

import click
import torch

from pipeline.metrics import choose_threshold, summary
from pipeline.model import build_model
from pipeline.training import FaceImages, fast_path, list_images

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@click.command()
@click.argument("set_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--patch", default=128, show_default=True)
@click.option("--batch", default=64, show_default=True)
@click.option("--steps", default=1000, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--stem", type=click.Choice(["plain", "full-res"]), default="plain")
@click.option("--seed", default=0, show_default=True)
@click.option("--pretrain", multiple=True, type=click.Path(exists=True, file_okay=False))
@click.option("--pretrain-steps", default=0, show_default=True)
@click.option(
    "--whole-image/--no-whole-image",
    default=True,
    show_default=True,
    help="Also score each val image whole (one pass at native size), as the scan would.",
)
def main(set_dir, patch, batch, steps, lr, stem, seed, pretrain, pretrain_steps, whole_image):
    torch.manual_seed(seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def load(root, split):
        ds = FaceImages(list_images(os.path.join(root, split)), cache=True)
        x = torch.stack(ds.cache if ds.cache is not None else [ds[i][0] for i in range(len(ds))])
        return x.to(dev), torch.tensor(ds.labels(), device=dev).float()

    xv, yv = load(set_dir, "val")
    size = xv.shape[-1]
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1) * 255

    def norm(x):
        return ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    model = build_model()
    if stem == "full-res":
        model.conv1.stride = (1, 1)
        model.maxpool = torch.nn.Identity()
    model = model.to(dev).to(memory_format=torch.channels_last)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    bf16 = fast_path(dev)  # the training job's rule

    def patches(xt, yt, n):
        i = torch.randint(0, len(xt), (n,), device=dev)
        oy, ox = (torch.randint(0, xt.shape[-2] - patch + 1, (n,), device=dev) for _ in range(2))
        ar = torch.arange(patch, device=dev)
        rows = (oy[:, None] + ar)[:, :, None].expand(n, patch, patch)
        cols = (ox[:, None] + ar)[:, None, :].expand(n, patch, patch)
        out = xt[i[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        flip = torch.rand(n, device=dev) < 0.5
        out[flip] = out[flip].flip(-1)
        return out, yt[i]

    @torch.no_grad()
    def evaluate():
        """Val summaries (at 0.5, at the best threshold) for the 16-patch average and,
        with --whole-image, for one pass over each whole image."""
        model.eval()
        grid = torch.linspace(0, size - patch, 4).round().long().tolist()
        crops = [xv[:, :, y : y + patch, x : x + patch] for y in grid for x in grid]
        ways = {"16 patches": [logits_of(c) for c in crops]}
        if whole_image:
            ways["whole image"] = [logits_of(xv)]
        model.train()
        labels = yv.cpu().numpy()
        out = {}
        for name, logits in ways.items():
            scores = torch.sigmoid(torch.stack(logits).mean(0)).cpu().numpy()
            best = choose_threshold(labels, scores)
            out[name] = summary(labels, scores, 0.5), summary(labels, scores, best)
        return out

    def logits_of(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return torch.cat(
                [model(norm(x[i : i + 64])).float().squeeze(1) for i in range(0, len(x), 64)]
            )

    def train(sets, steps, phase):
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
        sizes = torch.tensor([float(len(x)) for x, _ in sets])
        start = time.time()
        for step in range(1, steps + 1):
            xt, yt = sets[int(torch.multinomial(sizes, 1))]  # a set, in proportion to its size
            x, y = patches(xt, yt, batch)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model(norm(x)).float().squeeze(1), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % max(1, steps // 5) == 0:
                line = f"{phase} patch {patch} stem {stem} step {step} {time.time() - start:.0f}s "
                line += f"loss {loss.item():.3f}"
                for name, (at_half, at_best) in evaluate().items():
                    line += f" | {name}: val acc@0.5 {at_half['accuracy']:.4f} "
                    line += f"auc {at_half['auc']:.4f} acc@best {at_best['accuracy']:.4f}"
                print(line, flush=True)

    if pretrain and pretrain_steps:
        train([load(root, "train") for root in pretrain], pretrain_steps, "pretrain")
    train([load(set_dir, "train")], steps, "train")


if __name__ == "__main__":
    main()
