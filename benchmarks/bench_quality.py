"""Quality benchmark: train a named recipe with the real job, score every face set's val split.

    python benchmarks/bench_quality.py --recipe npr --train ffhq_stylegan \\
        --set epochs_full=20 --set train_crop=96 --cpus 2 --out runs/quality

Each row trains with `deepfake train`'s own code (Ray Train, `jobs.train.run_training`) on one
set's train split, or on several sets' train splits together (`--train all`, or
`--train ffhq_stylegan,lfw_faceswap`), then scores the val split of **every** labelled set with
`deepfake evaluate`'s code (`pipeline.evaluation.evaluate_images`): frame AUC, accuracy and EER.
The figures come from the last epoch's checkpoint (`last.pt`), not the epoch that did best on
val, since val is what the row reports (`--checkpoint best` for the other).

Prints one JSON line per row (also appended to `--results`), then a Markdown table of every row
in that file with the command that reproduces each. `--table` only prints the table. The face
sets are development data (../shared/data): read where they lie, never copied; a combined
training set is a folder of links under `--out`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time

import click

from jobs.cli import recipe_option
from pipeline.config import TrainConfig, recipe_config
from pipeline.evaluation import evaluate_images

# The sets with both classes in val, in the table's column order.
LABELLED_SETS = ("ffhq_stylegan", "ciplab_photoshop", "lfw_faceswap", "celeb_faceedit")
# --real-only trains on these sets' real faces ("all"): the labelled ones and a real-only one.
REAL_SETS = LABELLED_SETS + ("allage_real",)
SETTINGS = {f.name for f in dataclasses.fields(TrainConfig)} - {"data_dir", "run_dir", "val_dir"}


def parse_settings(pairs: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs -> TrainConfig overrides; values read as Python literals where they
    are (96, 2e-4, None, False), else as text (resnet50_npr)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in SETTINGS:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE, KEY one of {sorted(SETTINGS)}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def training_folder(data: str, sets: list[str], out: str, real_only: bool = False) -> str:
    """One set's own folder, or a folder whose train/ and val/ class folders link to each
    named set's (training reads links; nothing is copied); `real_only`: real/ alone."""
    if len(sets) == 1 and not real_only:
        return os.path.join(data, sets[0])
    folder = os.path.join(out, ("data-real-" if real_only else "data-") + "+".join(sets))
    for split in ("train", "val"):
        for label in ("real",) if real_only else ("real", "fake"):
            os.makedirs(os.path.join(folder, split, label), exist_ok=True)
            for name in sets:
                source = os.path.abspath(os.path.join(data, name, split, label))
                link = os.path.join(folder, split, label, name)
                if os.path.isdir(source) and not os.path.lexists(link):
                    os.symlink(source, link)
    return folder


def recompressed(folder: str, tmp: str, quality: int) -> str:
    """A copy of folder's {real,fake} images, each decoded and saved again as JPEG at
    `quality`, in tmp (outside the repository)."""
    import cv2

    from pipeline.training import list_images

    for path, label in list_images(folder):
        target = os.path.join(tmp, ("real", "fake")[label], os.path.basename(path) + ".jpg")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cv2.imwrite(target, cv2.imread(path), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return tmp


def blend_rate(cfg: TrainConfig, n: int = 64) -> float:
    """Self-blends made a second on one core, of the first `n` training faces with their
    landmarks, pasting another of those faces as often as training does (`blend_donors`) and
    each re-encoded afterwards as often as training does (`blend_jpeg`): whether blending can
    keep up with the network."""
    import numpy as np
    import torch

    from pipeline.selfblend import blend_pair, reencoded
    from pipeline.training import list_images, load_image
    from pipeline.trainplan import blend_outlines, read_landmarks, split_dirs

    landmarks = read_landmarks(os.path.join(cfg.run_dir, "landmarks.json"))
    items = list_images(split_dirs(cfg)[0], need_fakes=False)
    paths = [p for p, y in items if y == 0][:n]
    images = [np.ascontiguousarray(load_image(p).permute(1, 2, 0).numpy()) for p in paths]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    import cv2

    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        started = time.perf_counter()
        for i, (p, img) in enumerate(zip(paths, images, strict=True)):
            rng = np.random.default_rng(i)
            other = (i + 1) % len(paths)
            donor = (images[other], landmarks.get(paths[other]))
            pasted = donor if rng.random() < cfg.blend_donors else None
            fake = blend_pair(img, rng, landmarks.get(p), pasted, blend_outlines(cfg))[1]
            if rng.random() < cfg.blend_jpeg:
                reencoded(fake, rng)
        return round(len(paths) / (time.perf_counter() - started), 1)
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def auc_cell(row: dict, name: str) -> str:
    """0.912, or 0.912 (0.874 as JPEG 90) when the row also scored the set recompressed."""
    figures = row["val"].get(name)
    if not figures:
        return ""
    cell = f"{figures['auc']:.3f}"
    quality = row.get("eval_jpeg")
    if quality:
        cell += f" ({figures['auc_jpeg' + str(quality)]:.3f} as JPEG {quality})"
    return cell


def markdown(rows: list[dict]) -> str:
    short = {s: s.split("_")[0] for s in LABELLED_SETS}
    head = ["#", "recipe", "trained on", "changes"] + [f"{short[s]} AUC" for s in LABELLED_SETS]
    head += ["mean AUC", "min AUC", "minutes", "machine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows, 1):
        changes = " ".join(f"{k}={v}" for k, v in row["settings"].items()) or "-"
        aucs = [auc_cell(row, s) for s in LABELLED_SETS]
        cells = [str(i), row["recipe"], row["train"], changes, *aucs]
        cells += [f"{row['mean_auc']:.3f}", f"{row['min_auc']:.3f}", f"{row['minutes']:.1f}"]
        cells.append(row["machine"] + (f"; {row['note']}" if row.get("note") else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{i}. `{row['command']}`" for i, row in enumerate(rows, 1)]
    return "\n".join(lines)


# The face sets' folder, for every benchmark that reads them.
data_option = click.option("--data", default="../shared/data/faces", show_default=True)


def require_face_data(data: str) -> None:
    """A clear message instead of a traceback where the face sets are not."""
    if not os.path.isdir(data):
        raise click.ClickException(f"no face data at {data}: this benchmark needs ../shared/data")


@click.command()
@data_option
@recipe_option("The recipe the row trains; --set changes it.")
@click.option(
    "--train",
    "train_sets",
    default="ffhq_stylegan",
    show_default=True,
    help="A set, several joined by commas (one row trained on them together), or 'all'.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A training setting over the recipe's (a TrainConfig field), e.g. --set epochs_full=20.",
)
@click.option(
    "--real-only",
    is_flag=True,
    help="Train on the real faces of the --train sets alone (all: allage_real too), never a "
    "fake: the job then trains on self-blends of them and validates against blends.",
)
@click.option("--eval", "eval_sets", default=",".join(LABELLED_SETS), show_default=True)
@click.option("--checkpoint", type=click.Choice(["last", "best"]), default="last")
@click.option(
    "--eval-jpeg",
    type=click.IntRange(1, 100),
    default=None,
    help="Also score every val image re-encoded as JPEG at this quality, both classes alike: "
    "a model that read the sets' own JPEG history (a shortcut) loses it there.",
)
@click.option("--cpus", default=2, show_default=True, help="CPUs of the training worker.")
@click.option("--out", default="runs/quality", show_default=True)
@click.option("--results", default=None, help="JSON lines file. [default: OUT/results.jsonl]")
@click.option("--table", "table_only", is_flag=True, help="Only print the table of --results.")
@click.option(
    "--note",
    default="",
    help="Said beside the machine in the table: what else ran on it, for example.",
)
def main(data, recipe, train_sets, settings, real_only, eval_sets, checkpoint, eval_jpeg, cpus,
         out, results, table_only, note):  # fmt: skip
    results = results or os.path.join(out, "results.jsonl")
    if not table_only:
        row = run_row(
            data, recipe, train_sets, settings, eval_sets, checkpoint, eval_jpeg, cpus, out,
            real_only,
        )  # fmt: skip
        if note:
            row["note"] = note
        os.makedirs(os.path.dirname(os.path.abspath(results)), exist_ok=True)
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    if not os.path.isfile(results):
        raise click.ClickException(f"no results file at {results}")
    with open(results) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(markdown(rows))


def run_row(
    data, recipe, train_sets, settings, eval_sets, checkpoint, eval_jpeg, cpus, out,
    real_only=False,
) -> dict:  # fmt: skip
    require_face_data(data)
    every = REAL_SETS if real_only else LABELLED_SETS
    sets = list(every) if train_sets == "all" else train_sets.split(",")
    overrides = parse_settings(settings)
    name = ("real:" if real_only else "") + ("+".join(sets) if train_sets != "all" else "all")
    tag = "_".join([recipe, name] + [f"{k}-{v}" for k, v in overrides.items()])
    cfg = recipe_config(
        recipe,
        data_dir=training_folder(data, sets, out, real_only),
        run_dir=os.path.join(out, tag.replace("/", "-").replace(":", "-")),
        cpus_per_worker=cpus,
        **overrides,
    )
    started = time.monotonic()
    from jobs.train import run_training

    run_training(cfg)
    trained = time.monotonic()
    blends = blend_rate(cfg) if real_only or overrides.get("self_blend") else None
    weights = os.path.join(cfg.run_dir, f"{checkpoint}.pt")
    val = {}
    for s in eval_sets.split(","):
        folder = os.path.join(data, s, "val")
        if os.path.isdir(os.path.join(folder, "fake")):
            r = evaluate_images(weights, folder)
            val[s] = {k: round(float(r[k]), 4) for k in ("auc", "accuracy", "eer")}
            if eval_jpeg:
                with tempfile.TemporaryDirectory() as tmp:
                    r = evaluate_images(weights, recompressed(folder, tmp, eval_jpeg))
                val[s][f"auc_jpeg{eval_jpeg}"] = round(float(r["auc"]), 4)
    aucs = [v["auc"] for v in val.values()]
    return {
        "recipe": recipe,
        "train": name,
        "settings": overrides,
        "checkpoint": checkpoint,
        "val": val,
        "mean_auc": round(sum(aucs) / len(aucs), 4),
        "min_auc": round(min(aucs), 4),
        "train_minutes": round((trained - started) / 60, 2),
        "minutes": round((time.monotonic() - started) / 60, 2),
        "eval_jpeg": eval_jpeg,
        "blends_per_s_per_core": blends,
        "machine": machine(),
        "command": "python benchmarks/bench_quality.py " + shlex.join(sys.argv[1:]),
    }


if __name__ == "__main__":
    main()
