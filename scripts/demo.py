"""`make demo`: the whole tool on a built-in sample, on this machine's CPUs, in a few minutes.

1. builds sample videos from real photos that installed packages ship: real clips, face swaps
   and self-blended fakes (separate clips for training, validation and the audit itself);
2. extracts faces from the training clips and trains a small model on them (Ray Train);
3. scans the audit folder with it (Ray Data) into Parquet reports, and writes the HTML report;
4. prints where everything is and the most suspicious videos.

The model is small and trained on a handful of clips of two people: it shows how the pipeline
works, not how well a detector trained on real data performs.
"""

from __future__ import annotations

import os
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_sample import make_sample  # noqa: E402

from jobs.extract import run_extract  # noqa: E402
from jobs.scan import run_scan  # noqa: E402
from jobs.train import run_training  # noqa: E402
from pipeline import summary  # noqa: E402
from pipeline.audit import summary_line  # noqa: E402
from pipeline.config import ExtractConfig, Preprocess, ScanConfig, TrainConfig  # noqa: E402


def run_demo(
    out: str, clips: int = 2, frames: int = 30, epochs: int = 20, image_size: int = 64
) -> dict:
    say = lambda msg: click.echo(click.style(msg, bold=True))  # noqa: E731
    clips_dir, faces_dir = os.path.join(out, "training-clips"), os.path.join(out, "faces")
    audit_dir, report_dir = os.path.join(out, "videos"), os.path.join(out, "report")
    run_dir, html_path = os.path.join(out, "run"), os.path.join(out, "report.html")

    say("1/4 making sample videos from real face photos")
    make_sample(os.path.join(clips_dir, "train"), clips, frames, seed=1, extras=False)
    make_sample(os.path.join(clips_dir, "val"), 1, frames, seed=2, extras=False)
    make_sample(audit_dir, clips, frames, seed=3)

    say("2/4 extracting faces and training a small model (CPU, a few minutes)")
    pre = Preprocess(input_size=image_size)
    for split in ("train", "val"):
        # mode="replace": `make demo` again starts from the clips just made, not the last ones
        folders = os.path.join(clips_dir, split), os.path.join(faces_dir, split)
        run_extract(ExtractConfig(*folders, preprocess=pre, frames=16, mode="replace"))
    best = run_training(
        TrainConfig(
            data_dir=faces_dir,
            run_dir=run_dir,
            image_size=image_size,
            epochs_frozen=1,
            epochs_full=epochs,
            batch_size=16,
            lr=1e-3,
            lr_full=1e-3,
            self_blend=True,
            cpus_per_worker=2,
        )
    )
    click.echo(f"best epoch {best['epoch']}: val accuracy {best['val_accuracy']:.3f}, "
               f"AUC {best['val_auc']:.3f}")  # fmt: skip

    say("3/4 scanning the audit folder")
    s = run_scan(
        ScanConfig(
            video_dir=audit_dir,
            report_dir=report_dir,
            checkpoint=best["checkpoint"],
            frames=16,
            quiet=True,
        )
    )
    click.echo(summary_line(s, report_dir))
    summary.write_html(report_dir, html_path)

    say("4/4 the report")
    click.echo(summary.text_summary(summary.summarize(report_dir, top=5)))
    click.echo(f"\nParquet reports: {report_dir}/videos and {report_dir}/faces")
    click.echo(f"HTML report:     {html_path}")
    click.echo(f"model:           {best['checkpoint']} (metrics in {run_dir}/metrics.csv)")
    click.echo(
        f'pandas:          from pipeline.reports import load_videos; load_videos("{report_dir}")'
    )
    return {"report_dir": report_dir, "html": html_path, "checkpoint": best["checkpoint"]}


@click.command()
@click.option("--out", default="demo-output", show_default=True)
@click.option("--clips", default=2, show_default=True, help="Clips per person and kind.")
@click.option("--frames", default=30, show_default=True, help="Frames per sample clip.")
@click.option("--epochs", default=20, show_default=True, help="All-layer training epochs.")
def main(out, clips, frames, epochs):
    run_demo(out, clips, frames, epochs)


if __name__ == "__main__":
    main()
