"""`deepfake`: the command line. Each command is a few lines over one library or job call; its
options are made from the settings in pipeline/config.py (their defaults, choices and help
live there once), and their names are the settings' own."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import click

from pipeline.config import (
    DEFAULT_RECIPE,
    FACE_FINDING,
    RECIPES,
    ExtractConfig,
    Preprocess,
    ScanConfig,
    ServeConfig,
    TrainConfig,
    override_preprocess,
    recipe_faces,
)
from pipeline.lock import ReportLocked
from pipeline.model import MODELS, CheckpointError, load_checkpoint


class InputError(click.ClickException):
    """Unusable input (a missing folder, a bad checkpoint): exit status 2, like a usage error."""

    exit_code = 2


class Busy(click.ClickException):
    """Another scan is writing to the same report folder: exit status 3."""

    exit_code = 3


UNSET = object()
FACES = recipe_faces()  # what extract-faces cuts unless told: the default recipe's faces


def option(cls, name: str, default=UNSET, note: str = "", **extra):
    """The click option of setting `name` of the dataclass `cls` (pipeline.config.setting):
    its flag, help, choices and least value, and its default unless `default` is given (None:
    left unset, for the command to fill in; `note` then says from where)."""
    f = cls.__dataclass_fields__[name]
    meta = f.metadata
    flag = meta.get("flag", "--" + name.replace("_", "-"))
    value = f.default if default is UNSET else default
    kwargs: dict = {"help": meta["help"] + note, "show_default": value not in (None, False, "")}
    if value is dataclasses.MISSING:
        kwargs.update(required=True, show_default=False)
    elif isinstance(value, tuple):  # a list of words: written with commas
        kwargs["default"] = ",".join(value)
        kwargs["callback"] = lambda ctx, param, v: tuple(w.strip() for w in v.split(",") if w)
    else:
        kwargs["default"] = value
    kind = meta.get("type") or type(f.default)
    if "choices" in meta:
        kwargs["type"] = click.Choice(meta["choices"])
    elif "min" in meta:
        if kind is int:
            kwargs["type"] = click.IntRange(min=meta["min"])
        else:
            kwargs["type"] = click.FloatRange(min=meta["min"], min_open=meta.get("min_open", False))
    elif kind is bool and not meta.get("secondary"):
        kwargs["is_flag"] = True
    elif kind in (int, float):
        kwargs["type"] = kind
    if meta.get("secondary"):
        flag = f"{flag}/--no-{flag[2:]}"
    return click.option(flag, name, **{**kwargs, **extra})


def options(cls, names, default=UNSET, note="", **per_name):
    """`option` for each of `names`, in that order on the help page; `default` may be an
    instance of `cls` to take the defaults from; `per_name`: option() keywords of some."""

    def apply(command):
        for name in reversed(names):
            value = getattr(default, name) if isinstance(default, cls) else default
            command = option(cls, name, value, note, **per_name.get(name, {}))(command)
        return command

    return apply


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepfake-pipeline")
def cli():
    """Batch deepfake detection: scan folders of videos on Ray into Parquet reports."""


@cli.command()
@click.argument("video_dir", type=click.Path(exists=True, file_okay=False))
@options(ScanConfig, ("report_dir", "checkpoint", "frames", "max_faces", "aggregate", "top_k",
                      "threshold", "extensions", "batch_size", "address"))  # fmt: skip
@options(Preprocess, FACE_FINDING, default=None, note=" [default: the checkpoint's]")
@options(ScanConfig, ("rescan", "flush_seconds", "video_timeout", "quiet"))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def scan(video_dir, as_json, **settings):
    """Scan VIDEO_DIR (recursively) for deepfakes and write Parquet reports to --out.

    \b
    Example:
        deepfake scan ~/footage --out ~/reports/footage --checkpoint runs/r1/best.pt
    Then, in Python:
        from pipeline.reports import load_videos; load_videos("~/reports/footage")
    """
    from jobs.scan import run_scan
    from pipeline.audit import ScanInputError, ScanInterrupted, summary_line
    from pipeline.reports import ReportError

    try:
        cfg = ScanConfig(video_dir, **settings)
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
    click.echo(json.dumps(summary) if as_json else summary_line(summary, cfg.report_dir))


@cli.command("extract-faces")
@click.argument("video_dir", type=click.Path(exists=True, file_okay=False))
@options(ExtractConfig, ("out_dir", "labels_csv", "frames", "max_faces"),
         labels_csv={"type": click.Path(exists=True, dir_okay=False)})  # fmt: skip
@options(Preprocess, ("input_size", "crop", "margin", *FACE_FINDING), default=FACES)
@options(ExtractConfig, ("val_fraction",))
@click.option("--replace", "mode", flag_value="replace",
              help="--out already holds a face set: remove its crops first.")  # fmt: skip
@click.option(
    "--add",
    "mode",
    flag_value="add",
    help="--out already holds a face set: add these videos to it (same settings; a video "
    "extracted again replaces its crops).",
)
@options(ExtractConfig, ("address",))
def extract_faces(video_dir, mode, **settings):
    """Crop faces from labelled videos for training, with exactly the scan's code.

    \b
    Example:
        deepfake extract-faces ~/clips --out ~/faces --val-fraction 0.2
    reads ~/clips/real/** and ~/clips/fake/**, writes ~/faces/{train,val}/{real,fake}/*.png,
    ~/faces/manifest.parquet (source video, frame, box) and ~/faces/preprocess.json.
    """  # fmt: skip
    from jobs.extract import run_extract

    crop = {k: settings.pop(k) for k in ("input_size", "crop", "margin")}
    finding = {k: settings.pop(k) for k in FACE_FINDING}
    try:
        pre = override_preprocess(dataclasses.replace(FACES, **crop), **finding)
        summary = run_extract(
            ExtractConfig(video_dir, preprocess=pre, mode=mode or "new", **settings)
        )
    except (FileNotFoundError, PermissionError, ValueError, KeyError) as exc:
        raise InputError(str(exc)) from exc
    click.echo(json.dumps(summary))


TRAIN_OPTIONS = ("workers", "gpus_per_worker", "cpus_per_worker", "arch", "epochs_frozen",
                 "epochs_full", "pretrained", "image_size", "batch_size", "lr", "lr_full",
                 "weight_decay", "augment", "resize", "train_crop", "tta", "label_smoothing",
                 "mix", "mix_alpha", "drop_path", "ema", "self_blend", "boundary_weight",
                 "balance_sources", "seed")  # fmt: skip


def train_options(command):
    """The training settings, each unset unless given: the recipe's, or the setting's default."""
    for name in reversed(TRAIN_OPTIONS):
        field = TrainConfig.__dataclass_fields__[name]
        if name in RECIPES[DEFAULT_RECIPE]:
            note = " [default: the recipe's]"
        elif "[default:" in field.metadata["help"]:
            note = ""
        else:
            note = f" [default: {field.default}]"
        extra = {"type": click.Choice(sorted(MODELS))} if name == "arch" else {}
        command = option(TrainConfig, name, None, note, show_default=False, **extra)(command)
    return command


@cli.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@options(
    TrainConfig, ("run_dir", "val_dir"), val_dir={"type": click.Path(exists=True, file_okay=False)}
)
@recipe_option("Named training settings (docs/training.md); the options below override them.")
@train_options
def train(data_dir, recipe, **options):
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
        cfg = recipe_config(recipe, data_dir=data_dir, **given)
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
    from pipeline.reports import ReportError, load_videos
    from pipeline.reports.store import local_dir

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
@options(ServeConfig, ("checkpoint", "host", "port", "reports_dir", "max_upload_mb", "frames",
                       "max_faces", "detect_width"))  # fmt: skip
def serve(**settings):
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
    cfg = ServeConfig(**settings)
    loopback = cfg.host in ("127.0.0.1", "localhost")
    try:
        app = create_app(cfg, trusted_hosts=["127.0.0.1", "localhost"] if loopback else None)
    except CheckpointError as exc:
        raise InputError(str(exc)) from exc
    click.echo(f"serving on http://{cfg.host}:{cfg.port}/ (Ctrl-C to stop)", err=True)
    app.run(host=cfg.host, port=cfg.port, debug=False, threaded=True)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
