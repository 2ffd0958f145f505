"""`deepfake`: the command line. Each command is a few lines over one library or job call."""

from __future__ import annotations

import json

import click

from pipeline.config import AGGREGATES, VIDEO_EXTENSIONS, ScanConfig
from pipeline.model import CheckpointError


class InputError(click.ClickException):
    """Unusable input (a missing folder, a bad checkpoint): exit status 2, like a usage error."""

    exit_code = 2


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
@click.option("--top-k", default=8, show_default=True, help="k for --aggregate topk.")
@click.option(
    "--threshold", type=float, default=None, help="Fake above this. [default: the checkpoint's]"
)
@click.option(
    "--extensions",
    default=",".join(VIDEO_EXTENSIONS),
    show_default=True,
    help="Comma-separated video file extensions, case-insensitive.",
)
@click.option("--batch-size", default=8, show_default=True, help="Videos per scoring batch.")
@click.option("--address", default=None, help="Ray cluster address. [default: RAY_ADDRESS]")
@click.option("--quiet", is_flag=True, help="No progress lines, only the summary.")
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
    from jobs.scan import run_scan, summary_line

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
        )
        summary = run_scan(cfg)
    except (CheckpointError, NotADirectoryError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    click.echo(json.dumps(summary) if as_json else summary_line(summary, report_dir))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
