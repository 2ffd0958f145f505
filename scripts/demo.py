"""`make demo`: build a sample folder, make a checkpoint, scan the folder on a local Ray, and
show the report.

The checkpoint here has random weights (no trained model ships with the code and none can be
downloaded), so its scores show how the pipeline works, not whether a clip is fake.
"""

from __future__ import annotations

import os
import sys

import click
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_sample import make_sample  # noqa: E402

from jobs.scan import run_scan, summary_line  # noqa: E402
from pipeline.config import Preprocess, ScanConfig  # noqa: E402
from pipeline.model import build_model, save_checkpoint  # noqa: E402
from pipeline.reports import load_faces, load_videos  # noqa: E402


@click.command()
@click.option("--out", default="demo-output", show_default=True)
@click.option("--frames", default=16, show_default=True)
def main(out, frames):
    videos = os.path.join(out, "videos")
    report = os.path.join(out, "report")
    ckpt = os.path.join(out, "random-weights.pt")
    make_sample(videos)
    if not os.path.exists(ckpt):
        click.echo("making an UNTRAINED checkpoint (random weights): scores are not meaningful")
        save_checkpoint(ckpt, build_model(), preprocess=Preprocess(input_size=128))
    cfg = ScanConfig(video_dir=videos, report_dir=report, checkpoint=ckpt, frames=frames)
    summary = run_scan(cfg)
    click.echo(summary_line(summary, report))
    pd.set_option("display.width", 160)
    v = load_videos(report)
    click.echo("\nvideos, most suspicious first:")
    cols = ["path", "status", "fake_score", "label", "frames_with_face", "frames_sampled", "error"]
    click.echo(v[cols].assign(path=v.path.map(os.path.basename)).to_string(index=False))
    click.echo(f"\n{len(load_faces(report))} face rows; load them with:")
    click.echo(f'  from pipeline.reports import load_videos; load_videos("{report}")')


if __name__ == "__main__":
    main()
