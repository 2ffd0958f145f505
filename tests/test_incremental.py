"""The scan's run logic without Ray (pipeline.audit): what a rescan skips, moved videos, the
records, and the promise of one row per video, with the scoring done in this process."""

import ast
import glob
import os

import pytest
from fixtures import write_video

from pipeline import audit
from pipeline.config import ScanConfig
from pipeline.extract import extract_video
from pipeline.model import model_from_checkpoint
from pipeline.reports import load_runs, load_videos
from pipeline.scoring import Scorer, score_batch


def in_process(cfg: ScanConfig, plan: audit.Plan, calls: list):
    """A `score` for audit.run: extract and score each video here, one at a time."""
    pre = plan.ckpt["preprocess"]
    scorer = Scorer(model_from_checkpoint(plan.ckpt), pre, device="cpu")

    def score(rows):
        calls.append(sorted(os.path.basename(r["path"]) for r in rows))
        for ref in rows:
            row = extract_video(ref, pre, cfg.frames, cfg.max_faces)
            batch = {k: [v] for k, v in row.items()}
            out = score_batch(
                batch, scorer, threshold=plan.threshold, model_id=plan.ckpt["model_id"]
            )
            yield {k: v[0] for k, v in out.items()}

    return score


def scan(cfg: ScanConfig, calls: list, lines: list) -> dict:
    plan = audit.prepare(cfg, has_gpus=lambda: False)
    return audit.run(cfg, plan, in_process(cfg, plan, calls), lines.append)


@pytest.fixture
def folder(tmp_path, face_video):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", frames=8)
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 100)
    return videos


def test_a_rescan_without_ray_scores_only_what_changed_and_retries_errors(
    folder, tmp_path, checkpoint
):
    cfg = ScanConfig(str(folder), str(tmp_path / "report"), checkpoint, frames=4)
    calls, lines = [], []
    first = scan(cfg, calls, lines)
    assert (first["videos"], first["ok"], first["error"]) == (2, 1, 1)
    second = scan(cfg, calls, lines)
    # the scored video is skipped; the broken one is tried again, and fails again
    assert calls == [["a.mp4", "broken.mp4"], ["broken.mp4"]]
    assert (second["videos"], second["skipped"], second["error"]) == (1, 1, 1)
    videos = load_videos(cfg.report_dir).set_index("path")
    assert videos.status.to_dict() == {
        str(folder / "a.mp4"): "ok",
        str(folder / "broken.mp4"): "error",
    }
    runs = load_runs(cfg.report_dir)
    assert list(runs.status) == ["completed", "completed"]
    assert list(runs.skipped) == [0, 1]
    assert any("1 to scan, 1 unchanged" in line for line in lines)


def test_a_moved_video_keeps_its_result_and_its_old_path_says_where_it_went(
    folder, tmp_path, checkpoint
):
    cfg = ScanConfig(str(folder), str(tmp_path / "report"), checkpoint, frames=4)
    calls, lines = [], []
    scan(cfg, calls, lines)
    before = load_videos(cfg.report_dir).set_index("path").fake_score[str(folder / "a.mp4")]
    os.rename(folder / "a.mp4", folder / "b.mp4")
    summary = scan(cfg, calls, lines)
    assert calls[-1] == ["broken.mp4"]  # the moved video is not scored again
    assert (summary["moved"], summary["missing"]) == (1, 1)
    videos = load_videos(cfg.report_dir).set_index("path")
    assert videos.fake_score[str(folder / "b.mp4")] == pytest.approx(before)
    assert videos.status[str(folder / "a.mp4")] == "missing"
    assert str(folder / "b.mp4") in videos.error[str(folder / "a.mp4")]


def test_a_lost_result_fails_the_run_instead_of_passing_unnoticed(folder, tmp_path, checkpoint):
    cfg = ScanConfig(str(folder), str(tmp_path / "report"), checkpoint, frames=4)
    plan = audit.prepare(cfg, has_gpus=lambda: False)
    score = in_process(cfg, plan, [])
    with pytest.raises(RuntimeError, match="2 videos to scan but 1 results written"):
        audit.run(cfg, plan, lambda rows: score(rows[:1]), lambda line: None)
    assert len(load_videos(cfg.report_dir)) == 1  # what was scored is kept


def test_the_library_imports_neither_ray_nor_the_jobs():
    """pipeline/ is plain Python: no module of it imports ray or jobs/, not even inside a
    function (read from the source, so a lazy import counts too)."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline")
    found = []
    for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [(path, n) for n in names if n.split(".")[0] in ("ray", "jobs")]
    assert len(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)) > 20
    assert not found, found
