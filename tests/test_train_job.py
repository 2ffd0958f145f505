"""The Ray Train job, extract-faces and evaluate, end to end on the local Ray."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from fixtures import write_face_images, write_video

from jobs.cli import cli
from pipeline.config import Preprocess
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports.writer import ReportWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--image-size", "48", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_face_images(d / "train", n_real=12, n_fake=12, size=56, seed=1)
    write_face_images(d / "val", n_real=6, n_fake=6, size=56, seed=2)
    return d


@pytest.fixture(scope="module")
def trained(ray_session, data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    args = ["train", str(data_dir), "--out", str(run), "--epochs-frozen", "1", "--epochs-full", "1"]
    result = CliRunner().invoke(cli, args + TINY + ["--self-blend", "--train-crop", "40",
                                                    "--ema", "0.9", "--mix", "cutmix",
                                                    "--boundary-weight", "0",
                                                    "--label-smoothing", "0.1",
                                                    "--drop-path", "0.1",
                                                    "--tta", "flip"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return run, json.loads(result.output.strip().splitlines()[-1])


def test_two_phases_write_checkpoints_and_metrics(trained):
    run, best = trained
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["phase"]) for r in rows] == [("0", "frozen"), ("1", "full")]
    assert {r["recipe"] for r in rows} == {"npr-full"}  # the default recipe, named in every row
    for r in rows:
        assert 0 <= float(r["val_auc"]) <= 1 and 0 <= float(r["val_eer"]) <= 1
        assert float(r["train_loss"]) > 0 and float(r["val_loss"]) > 0
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 1 and last["phase"] == "full"
    assert {"optimizer", "scheduler", "scaler", "history", "config", "metrics"} <= set(last)
    assert last["config"]["self_blend"] is True and last["config"]["train_crop"] == 40
    # the recipe's variant, input filter and preprocessing, for the scan to rebuild
    assert (last["recipe"], last["arch"], last["input_filter"]) == (
        "npr-full", "resnet50_npr", "npr")  # fmt: skip
    assert (last["preprocess"].crop, last["preprocess"].tta) == ("native", "flip")
    # --ema: "model" holds the average (what is scored), "train_model" the weights to go on from
    assert last["ema_updates"] > 0 and set(last["train_model"]) == set(last["model"])
    assert any(not torch.equal(last["train_model"][k], v) for k, v in last["model"].items())
    assert (last["config"]["mix"], last["config"]["label_smoothing"]) == ("cutmix", 0.1)
    assert last["config"]["drop_path"] == 0.1
    assert best["checkpoint"] == str(run / "best.pt")
    assert best["val_auc"] == max(float(r["val_auc"]) for r in rows)


def test_best_checkpoint_is_what_the_scan_takes(trained, tmp_path):
    run, best = trained
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["preprocess"].input_size == 48
    assert 0.0 <= ckpt["threshold"] <= 1.0 and ckpt["threshold"] == best["threshold"]
    model_from_checkpoint(ckpt)  # loads into the architecture
    write_video(tmp_path / "v" / "a.mp4", frames=6)
    result = CliRunner().invoke(
        cli,
        ["scan", str(tmp_path / "v"), "--out", str(tmp_path / "r"), "--checkpoint",
         str(run / "best.pt"), "--frames", "2", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_rerunning_a_finished_run_does_nothing(trained, data_dir):
    run, best = trained
    before = (run / "last.pt").stat().st_mtime_ns
    args = ["train", str(data_dir), "--out", str(run), "--epochs-frozen", "1", "--epochs-full", "1"]
    result = CliRunner().invoke(cli, args + TINY)
    assert result.exit_code == 0 and json.loads(result.output.strip().splitlines()[-1]) == best
    assert (run / "last.pt").stat().st_mtime_ns == before


def test_killed_run_resumes_at_the_next_epoch_with_its_optimizer_state(
    ray_session, data_dir, tmp_path
):
    # ray_session: another Ray instance runs on this machine meanwhile, as a scan might
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "jobs", "train", str(data_dir), "--out", str(run),
           "--epochs-frozen", "0", "--epochs-full", "2", "--ema", "0.9", *TINY]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (run / "last.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, at once
        proc.wait()
    first = load_checkpoint(run / "last.pt")
    assert first["epoch"] == 0
    steps_per_epoch = 24 // 8
    assert _adam_steps(first) == steps_per_epoch

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("resuming after epoch 0") == 1
    # The console says each epoch once, and nothing of Ray Train's housekeeping: no report
    # repeated as a dict, no placement-group cleaner asking for a dashboard there is none of.
    assert output.count("epoch 1 (full): train loss") == 1
    assert "Reporting training result" not in output
    assert "PlacementGroupCleaner" not in output and "State API" not in output
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 1
    # Restored optimizer state: Adam's step count carries on from the first run's.
    assert _adam_steps(last) == 2 * steps_per_epoch
    assert last["scheduler"]["last_epoch"] == 2 * steps_per_epoch
    # and the weight average too: it goes on from the killed run's average
    assert (first["ema_updates"], last["ema_updates"]) == (steps_per_epoch, 2 * steps_per_epoch)
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.epoch) == [0, 1]


def _adam_steps(ckpt) -> int:
    return {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}.pop()


def test_evaluate_an_image_folder(trained, data_dir):
    run, _ = trained
    result = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(run / "best.pt"), str(data_dir / "val")]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["n"] == 12 and 0 <= out["accuracy"] <= 1 and 0 <= out["auc"] <= 1
    assert sum(out["confusion"].values()) == 12


def test_evaluate_a_scan_report_against_video_labels(tmp_path):
    report = str(tmp_path / "report")
    # The scan's threshold was 0.350000012; its settings show it to 6 digits, as 0.35.
    writer = ReportWriter(report, "run1", settings="frames=2 aggregate=mean threshold=0.35")
    truth = {"a.mp4": ("fake", 0.9), "b.mp4": ("real", 0.2), "c.mp4": ("fake", 0.4),
             "d.mp4": ("real", 0.350000006)}  # fmt: skip
    for name, (_, score) in truth.items():
        label = "fake" if score >= 0.350000012 else "real"
        writer.add({**_scored_row(str(tmp_path / name), score), "label": label})
    writer.add(_scored_row(str(tmp_path / "broken.mp4"), float("nan"), status="error"))
    writer.close()
    labels = tmp_path / "labels.csv"
    rows = "".join(f"{n},{label}\n" for n, (label, _) in truth.items())
    # as a spreadsheet saves it: with a byte-order mark
    labels.write_text("\ufeffpath,label\n" + rows + "broken.mp4,1\nmissing.mp4,0\n")

    def evaluate(*extra, labels=labels):
        result = CliRunner().invoke(cli, ["evaluate", "--report", report, "--labels", str(labels),
                                          *extra])  # fmt: skip
        return result.exit_code, json.loads(result.output) if result.exit_code == 0 else result

    code, out = evaluate("--threshold", "0.5")
    assert code == 0
    assert out["n"] == 4 and out["accuracy"] == pytest.approx(3 / 4) and out["auc"] == 1.0
    assert out["unscored"] == 1 and out["missing_from_report"] == 1
    assert out["confusion"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    # By default the scan's own decisions: c.mp4 (0.4) is fake there, d.mp4 real.
    code, out = evaluate()
    assert out["threshold"] == 0.35 and out["accuracy"] == 1.0
    assert out["confusion"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 2}
    assert evaluate("--threshold", "0")[1]["confusion"]["fp"] == 2  # 0 is a threshold too

    nothing = tmp_path / "elsewhere.csv"  # paths that match no video: counted, not a crash
    nothing.write_text("path,label\nx/a.mp4,fake\n")
    code, out = evaluate(labels=nothing)
    assert code == 0 and out["n"] == 0 and out["accuracy"] is None
    assert out["confusion"] == {"tn": 0, "fp": 0, "fn": 0, "tp": 0}  # the same keys as ever
    assert out["missing_from_report"] == 1
    nothing.write_text("video,label\na.mp4,fake\n")
    code, result = evaluate(labels=nothing)
    assert code == 2 and "columns path,label" in result.output
    nothing.write_text("path,label\na.mp4,fake\nb.mp4\n")  # a row without its label
    code, result = evaluate(labels=nothing)
    assert code == 2 and "elsewhere.csv:3: label must be" in result.output


def _scored_row(path, score, status="ok"):
    ok = status == "ok"
    return {
        "path": path, "status": status, "error": "" if ok else "boom", "fake_score": score,
        "label": "", "frames_sampled": 1, "frames_with_face": int(ok), "faces_scored": 0,
        "duration_s": 1.0, "fps": 1.0, "width": 1, "height": 1, "size_bytes": 1,
        "modified_at": 0.0, "fingerprint": "f", "model_id": "m", "face_meta": b"",
        "face_scores": b"",
    }  # fmt: skip


def test_extract_faces_splits_by_video_and_writes_a_manifest(ray_session, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    for label in ("real", "fake"):
        for i in range(3):
            # distinct lengths: distinct contents (the split is keyed by content)
            write_video(videos / label / f"{label}{i}.mp4", frames=8 + i + 3 * (label == "fake"))
    (videos / "fake" / "broken.mp4").write_text("no video")
    out = tmp_path / "faces"
    from pipeline import audit

    monkeypatch.setattr(audit, "PROGRESS_EVERY_S", 0.0)
    result = CliRunner().invoke(
        cli,
        ["extract-faces", str(videos), "--out", str(out), "--frames", "3",
         "--image-size", "40", "--val-fraction", "0.5", "--detect-width", "320"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["videos"], summary["ok"], summary["error"]) == (7, 6, 1)
    progress = [line for line in result.output.splitlines() if line.startswith("7/7 videos (")]
    assert progress[-1].endswith(" videos/s, about 0s left")  # PROGRESS_EVERY_S is 0 here
    assert f"7/7 videos ({summary['faces_real'] + summary['faces_fake']} faces), " in progress[-1]
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == summary["faces_real"] + summary["faces_fake"] >= 15
    assert all((out / p).is_file() for p in manifest.image)
    assert (manifest.groupby("video").split.nunique() == 1).all()  # a video sits in one split
    assert set(manifest.split) <= {"train", "val"}
    assert all(
        f"/{lab}/" in f"/{img}" for img, lab in zip(manifest.image, manifest.label, strict=True)
    )
    preprocess = json.loads((out / "preprocess.json").read_text())
    assert (preprocess["input_size"], preprocess["detect_width"]) == (40, 320)
    crop = np.fromfile(out / manifest.image.iloc[0], np.uint8)
    assert crop[:4].tobytes() == b"\x89PNG"
    faces = summary["faces_by_split"]
    assert sum(n for split in faces.values() for n in split.values()) == len(manifest)

    # Again into the same folder: refused, since stale crops would stay behind to be trained on.
    args = ["--out", str(out), "--frames", "3", "--image-size", "40", "--val-fraction", "0.5",
            "--detect-width", "320"]  # fmt: skip
    again = CliRunner().invoke(cli, ["extract-faces", str(videos), *args])
    assert again.exit_code == 2 and "already holds a face set" in again.output
    # The clips folder moved, one clip relabelled: --replace leaves no stale crop, and every
    # video keeps its split (keyed by its content, not its path).
    moved = tmp_path / "moved"
    os.rename(videos, moved)
    os.rename(moved / "fake" / "fake0.mp4", moved / "real" / "fake0.mp4")
    result = CliRunner().invoke(cli, ["extract-faces", str(moved), *args, "--replace"])
    assert result.exit_code == 0, result.output
    replaced = pd.read_parquet(out / "manifest.parquet")
    assert images_on_disk(out) == set(replaced.image)
    fakes = set(replaced[replaced.label == "fake"].video.map(os.path.basename))
    assert fakes == {"fake1.mp4", "fake2.mp4"}

    def split_by_name(m):
        return dict(zip(m.video.map(os.path.basename), m.split, strict=True))

    assert split_by_name(replaced) == split_by_name(manifest)
    # Moved again, then --add: a new clip joins, the others (found by their content where they
    # are now) replace their own crops instead of being added twice.
    os.rename(moved, tmp_path / "moved2")
    moved = tmp_path / "moved2"
    write_video(moved / "real" / "new.mp4", frames=20)
    # and an --add before was killed after writing a crop it never listed
    (out / "val" / "fake").mkdir(parents=True, exist_ok=True)
    (out / "val" / "fake" / "gone-0123abcd_f000002_0.png").write_bytes(b"\x89PNG")
    result = CliRunner().invoke(cli, ["extract-faces", str(moved), *args, "--add"])
    assert result.exit_code == 0, result.output
    assert "removed 1 crops an interrupted extraction left in" in result.output
    added = pd.read_parquet(out / "manifest.parquet")
    assert images_on_disk(out) == set(added.image)
    assert added.video.str.startswith(str(moved)).all()
    per_video = added.video.map(os.path.basename).value_counts()
    assert (
        per_video.drop("new.mp4").to_dict()
        == replaced.video.map(os.path.basename).value_counts().to_dict()
    )
    other = [a if a != "40" else "48" for a in args]
    result = CliRunner().invoke(cli, ["extract-faces", str(moved), *other, "--add"])
    assert result.exit_code == 2 and "other settings" in result.output
    result = CliRunner().invoke(
        cli, ["extract-faces", str(moved), *args, "--detect-width", "640", "--add"]
    )
    assert result.exit_code == 2 and "other settings" in result.output
    other = [a if a != "0.5" else "0.2" for a in args]
    result = CliRunner().invoke(cli, ["extract-faces", str(moved), *other, "--add"])
    assert result.exit_code == 2 and "--val-fraction 0.5" in result.output
    # --replace without a split: no empty train/ and val/ left for training to take instead
    unsplit = [a if a != "0.5" else "0" for a in args]
    result = CliRunner().invoke(cli, ["extract-faces", str(moved), *unsplit, "--replace"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["fake", "real"]


def images_on_disk(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*.png")}


def test_extract_faces_from_a_labels_csv(ray_session, tmp_path):
    clips = tmp_path / "clips"
    write_video(clips / "x.mp4", frames=4)
    write_video(clips / "y.mp4", frames=5)
    shutil.copyfile(clips / "y.mp4", clips / "y copy.mp4")  # one clip, filed under both labels
    rows = "clips/x.mp4,1\nclips/y.mp4,fake\nclips/./x.mp4,fake\nclips/y copy.mp4,real\n"
    (tmp_path / "labels.csv").write_text("path,label\n" + rows)  # x twice, the same label
    out = tmp_path / "faces"
    result = CliRunner().invoke(
        cli,
        ["extract-faces", str(clips), "--out", str(out),
         "--labels", str(tmp_path / "labels.csv"), "--frames", "2", "--image-size", "32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["videos"], summary["conflicting_labels"]) == (1, 2)  # x, once
    assert "labelled both real and fake (copies or links of one clip" in result.output
    assert len(list((out / "fake").glob("*.png"))) == 2 and not (out / "real").exists()


def test_extract_faces_from_real_clips_alone_points_to_self_blended_training(ray_session, tmp_path):
    for name in ("a", "b"):
        write_video(tmp_path / "clips" / "real" / f"{name}.mp4", frames=4)
    out = tmp_path / "faces"
    args = ["extract-faces", str(tmp_path / "clips"), "--out", str(out), "--frames", "2",
            "--image-size", "32", "--val-fraction", "0.5"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "real faces only: `deepfake train` trains on self-blended fakes" in result.output
    assert "warning: no fake faces" not in result.output
    assert list((out / "train" / "real").glob("*.png")) and not (out / "train" / "fake").exists()


def test_a_labels_csv_that_contradicts_itself_or_is_empty_is_refused(tmp_path):
    from pipeline.faceset import labelled_videos

    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.mp4,real\nb.mp4,fake\n./a.mp4,1\n")
    with pytest.raises(ValueError, match=r"labels.csv:4: .*a.mp4 is labelled fake here and real "
                       r"on line 2"):  # fmt: skip
        labelled_videos(str(tmp_path), str(labels))
    labels.write_text("path,label\r\n")
    with pytest.raises(ValueError, match="no rows under its path,label header"):
        labelled_videos(str(tmp_path), str(labels))
    args = ["extract-faces", str(tmp_path), "--out", str(tmp_path / "faces"), "--val-fraction"]
    for bad in ("nan", "20"):  # click's range lets NaN through
        result = CliRunner().invoke(cli, [*args, bad])
        assert result.exit_code == 2 and "--val-fraction" in result.output


def test_crops_an_interrupted_extraction_left_are_removed_before_the_next(tmp_path):
    from pipeline.config import Preprocess
    from pipeline.faceset import FaceSetWriter

    out, preprocess = tmp_path / "faces", Preprocess(input_size=32)
    leftover = out / "val" / "fake" / "clip-0123abcd_f000004_0.png"  # named as `add` names
    mine = out / "val" / "fake" / "mine.png"  # the user's own image: never removed
    for path in (leftover, mine):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG")
    writer = FaceSetWriter(str(out), preprocess, 0.5, "new")
    assert leftover.exists()  # checking the folder removes nothing
    assert writer.prepare() == 1
    assert not leftover.exists() and mine.exists()
    writer.close()
    # --replace: its crops and manifest go only when the work starts, and together
    listed = out / "train" / "real" / "v-89abcdef_f000001_0.png"
    listed.parent.mkdir(parents=True)
    listed.write_bytes(b"\x89PNG")
    writer = FaceSetWriter(str(out), preprocess, 0.5, "replace")  # its manifest lists one crop
    writer.rows.append({"image": str(listed.relative_to(out)), "label": "real", "split": "train",
                        "video": "v.mp4", "frame_index": 1, "face_index": 0, "x": 0, "y": 0,
                        "w": 1, "h": 1, "source": "s"})  # fmt: skip
    writer.close()
    writer = FaceSetWriter(str(out), preprocess, 0.5, "replace")
    assert listed.exists() and (out / "manifest.parquet").exists()
    writer.prepare()  # and killed here, before its own manifest: no manifest lists lost crops
    assert not listed.exists() and not (out / "manifest.parquet").exists()
    assert FaceSetWriter(str(out), preprocess, 0.5, "new").prepare() == 0  # a fresh start


def test_an_add_killed_on_the_way_leaves_each_clip_its_split(tmp_path):
    from pipeline.config import Preprocess
    from pipeline.faceset import FaceSetWriter

    out, preprocess = tmp_path / "faces", Preprocess(input_size=32)
    writer = FaceSetWriter(str(out), preprocess, 0.5, "new")
    writer.prepare()
    for key, split in (("s1", "train"), ("s2", "val")):
        crop = out / split / "fake" / f"{key}-89abcdef_f000001_0.png"
        crop.parent.mkdir(parents=True, exist_ok=True)
        crop.write_bytes(b"\x89PNG")
        writer.rows.append({"image": str(crop.relative_to(out)), "label": "fake", "split": split,
                            "video": f"{key}.mp4", "frame_index": 1, "face_index": 0, "x": 0,
                            "y": 0, "w": 1, "h": 1, "source": key})  # fmt: skip
    writer.close()
    # An --add extracting s1 again removed its crop and wrote a new one, then was killed.
    (out / "train" / "fake" / "s1-89abcdef_f000001_0.png").unlink()
    (out / "val" / "fake" / "s1-89abcdef_f000001_0.png").write_bytes(b"\x89PNG")
    writer = FaceSetWriter(str(out), preprocess, 0.5, "add")
    # s1 keeps its split for the next plan, though none of its crops is left
    assert sorted(writer.kept_videos()) == [("s1", "fake", "train"), ("s2", "fake", "val")]
    writer.leave_out({"s2"})  # now labelled both ways: its earlier crops go too
    assert writer.prepare() == 1  # the crop the killed run never listed
    assert images_on_disk(out) == set()
    writer.close()
    assert pd.read_parquet(out / "manifest.parquet").empty


def test_a_kill_before_best_pt_or_the_metrics_are_written_is_repaired(tmp_path):
    from pipeline.config import Preprocess
    from pipeline.model import build_model, save_checkpoint
    from pipeline.rundir import repair_run_dir

    model = build_model()
    history = [
        {"epoch": e, "phase": "full", "train_loss": 0.6, "val_loss": 0.6, "val_accuracy": 0.6,
         "val_auc": 0.6 + e / 10, "val_eer": 0.4}
        for e in range(2)
    ]  # fmt: skip
    common = {"preprocess": Preprocess(input_size=48), "threshold": 0.42, "phase": "full"}
    save_checkpoint(tmp_path / "best.pt", model, **common, epoch=0, metrics=history[0])
    # Killed after last.pt of epoch 1, the new best, before best.pt and metrics.csv.
    save_checkpoint(tmp_path / "last.pt", model, **common, epoch=1, metrics=history[1],
                    history=history, best_auc=0.7, best_epoch=1)  # fmt: skip
    repair_run_dir(str(tmp_path), load_checkpoint(tmp_path / "last.pt"))
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and best["threshold"] == 0.42 and best["metrics"]["val_auc"] == 0.7
    assert list(pd.read_csv(tmp_path / "metrics.csv").epoch) == [0, 1]
    before = (tmp_path / "best.pt").stat().st_mtime_ns
    repair_run_dir(str(tmp_path), load_checkpoint(tmp_path / "last.pt"))
    assert (tmp_path / "best.pt").stat().st_mtime_ns == before  # nothing to repair: untouched


def test_train_with_one_class_missing_from_val_exits_2_before_starting_ray(tmp_path):
    write_face_images(tmp_path / "d" / "train", n_real=2, n_fake=2)
    write_face_images(tmp_path / "d" / "val", n_real=2, n_fake=0)
    (tmp_path / "d" / "val" / "fake").mkdir(exist_ok=True)
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "d"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "found 2 real and 0 fake" in result.output
    assert "--self-blend" in result.output
    write_face_images(tmp_path / "d" / "val", n_real=0, n_fake=2)  # both classes now
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"),
                                      "--pretrained", str(tmp_path / "none.pt")])  # fmt: skip
    assert result.exit_code == 2 and "weights file not found" in result.output


def test_two_workers_train_from_a_pretrained_file_given_by_a_relative_path(
    ray_session, data_dir, tmp_path, monkeypatch
):
    from pipeline.config import Preprocess
    from pipeline.model import build_model, save_checkpoint

    save_checkpoint(tmp_path / "init.pt", build_model(), preprocess=Preprocess(input_size=48))
    monkeypatch.chdir(tmp_path)  # the workers run elsewhere: the job must make it absolute
    args = ["train", str(data_dir), "--out", "run", "--epochs-frozen", "0", "--epochs-full",
            "1", "--workers", "2", "--cpus", "1", "--pretrained", "init.pt", "--recipe", "classic",
            *TINY]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["config"]["workers"] == 2
    assert last["config"]["pretrained"] == str(tmp_path / "init.pt")


def test_real_faces_alone_train_on_self_blends_with_a_boundary_head(ray_session, tmp_path):
    for split, n, seed in (("train", 8, 1), ("val", 4, 2)):
        write_face_images(tmp_path / "d" / split, n_real=n, n_fake=0, size=56, seed=seed)
    shutil.rmtree(tmp_path / "d" / "train" / "fake")  # no fake/ folder at all
    args = ["train", str(tmp_path / "d"), "--out", str(tmp_path / "r"), "--epochs-full", "1",
            "--recipe", "npr", *TINY]  # fmt: skip
    refused = CliRunner().invoke(cli, args + ["--no-self-blend"])
    assert refused.exit_code == 2 and "real faces only and self-blending is off" in refused.output
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "no fake images in" in result.output and "self-blended fake of each" in result.output
    assert "validating against a seeded blend" in result.output
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    assert last["config"]["self_blend"] is True and last["config"]["boundary_weight"] == 1.0
    assert last["boundary_head"] and not any(k.startswith("head") for k in last["model"])
    assert 0 <= last["metrics"]["val_auc"] <= 1  # validated on reals and their blends
    # each real face's outline was found once and kept for the blends (and a resumed run)
    outlines = json.loads((tmp_path / "r" / "landmarks.json").read_text())
    assert len(outlines) == 8 + 4 and all("stamp" in v for v in outlines.values())
    # the scan's code loads the classifier alone
    model_from_checkpoint(load_checkpoint(tmp_path / "r" / "best.pt"))
    # a longer run goes on from last.pt, boundary head included, and finds no face again
    args[args.index("--epochs-full") + 1] = "2"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "face outlines" not in again.output  # all of them in landmarks.json already
    resumed = load_checkpoint(tmp_path / "r" / "last.pt")
    assert resumed["epoch"] == 1 and [h["epoch"] for h in resumed["history"]] == [0, 1]
    assert set(resumed["boundary_head"]) == set(last["boundary_head"])


def test_train_without_validation_data_exits_2(tmp_path):
    write_face_images(tmp_path / "only", n_real=2, n_fake=2)
    result = CliRunner().invoke(
        cli, ["train", str(tmp_path / "only"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "validation" in result.output


def test_a_face_the_scan_cuts_scores_as_extract_faces_saved_it(ray_session, tmp_path):
    """Native windows: the scan's crop of a real video frame and the PNG extract-faces wrote
    of it are the same pixels, and the scan's Scorer gives it the score evaluate gives."""
    import dataclasses

    from pipeline.discover import describe_file
    from pipeline.evaluation import score_images
    from pipeline.extract import extract_video, unpack_crops, unpack_face_meta
    from pipeline.faceset import crop_name
    from pipeline.model import build_model, save_checkpoint
    from pipeline.scoring import Scorer

    clips, out = tmp_path / "clips", tmp_path / "faces"
    write_video(clips / "real" / "a.mp4", frames=6)
    write_video(clips / "fake" / "b.mp4", frames=7)
    result = CliRunner().invoke(
        cli,
        ["extract-faces", str(clips), "--out", str(out), "--frames", "3", "--crop", "native",
         "--image-size", "64", "--detect-width", "320"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pre = Preprocess.from_dict(json.loads((out / "preprocess.json").read_text()))
    assert (pre.crop, pre.input_size) == ("native", 64)
    pre = dataclasses.replace(pre, tta="flip")
    torch.manual_seed(0)
    model = build_model("resnet50_layer2_npr").eval()
    save_checkpoint(tmp_path / "m.pt", model, preprocess=pre, arch="resnet50_layer2_npr",
                    config={"resize": False})  # fmt: skip
    ckpt = load_checkpoint(tmp_path / "m.pt")
    paths, _, evaluated = score_images(ckpt, str(out))
    by_name = dict(zip((os.path.basename(p) for p in paths), evaluated, strict=True))
    scorer = Scorer(model_from_checkpoint(ckpt), ckpt["preprocess"], device="cpu")
    compared = 0
    for video in (clips / "real" / "a.mp4", clips / "fake" / "b.mp4"):
        row = extract_video(describe_file(str(video)).to_row(), pre, frames=3, max_faces=1)
        crops = unpack_crops(row["crops"], pre.input_size)
        meta = unpack_face_meta(row["face_meta"])
        scanned = scorer.score(crops)
        for crop, m, score in zip(crops, meta, scanned, strict=True):
            name = crop_name(str(video), int(m[0]), int(m[2]))
            saved = cv2.imread(str(next(out.glob(f"*/{name}"))))
            assert np.array_equal(saved, cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            assert abs(score - by_name[name]) < 2e-2
            compared += 1
    assert compared == len(paths) >= 4


def test_the_quality_benchmark_trains_on_two_sets_and_scores_each(ray_session, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from bench_quality import main as bench_quality
    finally:
        sys.path.pop(0)
    for name, seed in (("setA", 1), ("setB", 3)):
        write_face_images(tmp_path / "faces" / name / "train", n_real=6, n_fake=6, size=56,
                          seed=seed)  # fmt: skip
        write_face_images(tmp_path / "faces" / name / "val", n_real=3, n_fake=3, size=56,
                          seed=seed + 1)  # fmt: skip
    args = ["--data", str(tmp_path / "faces"), "--train", "setA,setB", "--eval", "setA,setB",
            "--set", "epochs_full=1", "--set", "image_size=48", "--set", "batch_size=8",
            "--eval-jpeg", "90", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(bench_quality, args)
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])
    assert (row["recipe"], row["train"]) == ("npr-full", "setA+setB")
    assert row["settings"]["epochs_full"] == 1
    assert set(row["val"]) == {"setA", "setB"}
    for figures in row["val"].values():
        assert 0 <= figures["auc"] <= 1 and 0 <= figures["auc_jpeg90"] <= 1
    # the combined set is links to both sets' folders, nothing copied
    links = tmp_path / "out" / "data-setA+setB" / "train" / "real"
    assert sorted(p.name for p in links.iterdir()) == ["setA", "setB"]
    assert all(p.is_symlink() for p in links.iterdir())
    last = load_checkpoint(
        tmp_path / "out" / "npr-full_setA+setB_epochs_full-1_image_size-48_batch_size-8" / "last.pt"
    )  # noqa: E501
    assert last["config"]["recipe"] == "npr-full"
    assert "| 1 | npr-full | setA+setB |" in result.output and "bench_quality.py" in result.output
