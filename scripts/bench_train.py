"""Quality benchmark: train on each face set's train split, report its validation figures.

    python scripts/bench_train.py --data ../shared/data/faces \\
        --sets ffhq_stylegan:80,ciplab_photoshop:40,lfw_faceswap:30 --out runs/bench \\
        --no-resize --augment light --image-size 224 --batch-size 64 --cpus 15

Each set is trained from random weights (1 frozen-backbone epoch, then N all-layer epochs) with
the Ray Train job, then its best.pt is evaluated on the set's val split with `evaluate`'s code.
Prints one JSON line per set. The data sets are development data (../shared/data): this script
reads them where they lie and never copies them into the repository.
"""

from __future__ import annotations

import json
import os
import time

import click

from jobs.train import run_training
from pipeline.config import TrainConfig
from pipeline.evaluation import evaluate_images


@click.command()
@click.option("--data", default="../shared/data/faces", show_default=True)
@click.option(
    "--sets",
    default="ffhq_stylegan:80",
    show_default=True,
    help="Comma-separated SET:EPOCHS (all-layer epochs).",
)
@click.option("--out", default="runs/bench", show_default=True)
@click.option("--image-size", default=224, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--cpus", default=8, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--lr-full", default=1e-3, show_default=True)
@click.option("--augment", default="light", show_default=True)
@click.option("--no-resize", is_flag=True)
@click.option("--train-crop", type=int, default=None)
@click.option("--epochs-frozen", default=1, show_default=True)
@click.option("--self-blend", is_flag=True)
def main(data, sets, out, image_size, batch_size, cpus, lr, lr_full, augment, no_resize,
         train_crop, epochs_frozen, self_blend):  # fmt: skip
    if not os.path.isdir(data):
        raise click.ClickException(f"no face data at {data}: this benchmark needs ../shared/data")
    for spec in sets.split(","):
        name, epochs = spec.split(":")
        cfg = TrainConfig(
            data_dir=os.path.join(data, name),
            run_dir=os.path.join(out, name),
            image_size=image_size,
            epochs_frozen=epochs_frozen,
            epochs_full=int(epochs),
            batch_size=batch_size,
            lr=lr,
            lr_full=lr_full,
            augment=augment,
            resize=not no_resize,
            train_crop=train_crop,
            self_blend=self_blend,
            cpus_per_worker=cpus,
        )
        started = time.monotonic()
        best = run_training(cfg)
        val = evaluate_images(best["checkpoint"], os.path.join(data, name, "val"))
        line = {
            "set": name,
            "recipe": f"resnet50 random init, {epochs_frozen} frozen + {epochs} full epochs, "
            f"{augment} aug, {'native-res crops' if no_resize else 'resized'} {image_size}px, "
            + (f"trained on {train_crop}px patches, " if train_crop else "")
            + f"AdamW lr {lr}/{lr_full}, batch {batch_size}{', self-blend' if self_blend else ''}",
            "best_epoch": best["epoch"],
            "val_accuracy": round(val["accuracy"], 4),
            "val_auc": round(val["auc"], 4),
            "val_eer": round(val["eer"], 4),
            "threshold": round(val["threshold"], 4),
            "minutes": round((time.monotonic() - started) / 60, 2),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
