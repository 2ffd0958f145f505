"""What a person reads the morning after: a summary of a report folder, for the terminal, for
scripts (JSON, CSV), and as one self-contained HTML file with plots and face thumbnails."""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime

import cv2
import numpy as np
import pandas as pd

from pipeline.reports import load_faces, load_runs, load_videos
from pipeline.video import VideoError, open_video

THUMB = 96


def summarize(report_dir: str, top: int = 10) -> dict:
    videos = load_videos(report_dir)
    runs = load_runs(report_dir)
    scored = videos[videos.status == "ok"]
    return {
        "report_dir": report_dir,
        "videos": int((videos.status != "missing").sum()),  # in the folder at the last scan
        "missing": int((videos.status == "missing").sum()),
        "by_status": {k: int(v) for k, v in videos.status.value_counts().items()},
        "by_label": {k: int(v) for k, v in scored.label.value_counts().items()},
        "last_run": _clean(runs.iloc[-1].to_dict()) if len(runs) else None,
        "most_suspicious": [
            {
                "path": r.path,
                "fake_score": round(float(r.fake_score), 4),
                "label": r.label,
                "faces_scored": int(r.faces_scored),
            }
            for r in scored.head(top).itertuples()
        ],
        # what needs a person: the files that could not be scored, and why
        "errors": [
            {"path": r.path, "error": r.error}
            for r in videos[videos.status == "error"].sort_values("path").head(top).itertuples()
        ],
    }


# Counts in run records; a run recorded without one (older, or still running) makes pandas hold
# the column as floats, which would print as 4.0.
RUN_COUNTS = ("found", "scanned", "skipped", "missing", "videos", "ok", "no_face", "error",
              "fake", "real", "nodes", "metadata_files", "moved")  # fmt: skip


def _clean(d: dict) -> dict:
    out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
    return {k: int(v) if k in RUN_COUNTS and v is not None else v for k, v in out.items()}


def text_summary(s: dict) -> str:
    lines = [f"{s['videos']} videos in {s['report_dir']}"]
    if s["missing"]:
        lines[0] += f" ({s['missing']} more no longer found)"
    lines.append("  status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items())))
    lines.append("  label:  " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_label"].items())))
    if s["last_run"]:
        r = s["last_run"]  # cleaned by summarize: counts are ints, or None when not recorded
        line = f"  last run {r['run_id']} ({r.get('status')})"
        if r.get("finished_at"):
            moved = f"moved {r['moved']}, " if r.get("moved") else ""
            line += (
                f": scanned {r.get('scanned') or 0}, skipped {r.get('skipped') or 0}, {moved}"
                f"no longer found {r.get('missing') or 0}, finished {r['finished_at']}"
            )
        else:  # running, interrupted or unreadable: no totals yet
            line += f", started {r.get('started_at')}"
        lines.append(line)
        if r.get("settings"):
            lines.append(f"  settings: {r['settings']}")
    if s["most_suspicious"]:
        lines.append("most suspicious:")
        for v in s["most_suspicious"]:
            lines.append(f"  {v['fake_score']:.3f}  {v['label']:<4}  {v['path']}")
    if s["errors"]:
        shown, total = len(s["errors"]), s["by_status"].get("error", 0)
        more = f", the first {shown} by path; --format csv lists all" if shown < total else ""
        lines.append(f"could not be scored ({total}{more}):")
        for v in s["errors"]:
            lines.append(f"  {v['path']}: {v['error']}")
    return "\n".join(lines)


def png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def score_histogram(videos: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), dpi=100)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    for label, colour in (("real", "tab:blue"), ("fake", "tab:red")):
        scores = videos.loc[videos.label == label, "fake_score"].dropna()
        ax.hist(scores, bins=bins, alpha=0.7, color=colour, label=f"{label} ({len(scores)})")
    ax.set_xlabel("video fake score")
    ax.set_ylabel("videos")
    ax.legend()
    fig.tight_layout()
    return png_data_uri(fig)


def score_over_time(
    faces: pd.DataFrame, threshold: float | None = None, size: tuple[float, float] = (4, 2.2)
) -> str:
    """Each face's score against its time (or frame, where the time is unknown), as a PNG data
    URI; `faces` has the faces table's timestamp_s, frame_index, face_index and fake_score."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    ax = fig.subplots()
    x = faces.timestamp_s.where(faces.timestamp_s.notna(), faces.frame_index)
    for k, part in faces.assign(x=x).groupby("face_index"):
        ax.plot(part.x, part.fake_score, "o-", ms=3, label=f"face {k}")
    if threshold is not None:
        ax.axhline(threshold, color="0.6", lw=1, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("seconds" if faces.timestamp_s.notna().all() else "frame")
    ax.set_ylabel("fake score")
    fig.tight_layout()
    return png_data_uri(fig)


def thumbnails(path: str, faces: pd.DataFrame, n: int = 6) -> list[tuple[str, float]]:
    """The `n` most suspicious faces of a video, cut again from the video file."""
    picked = faces.sort_values("fake_score", ascending=False).head(n)
    try:  # the scan's reader: the report's boxes are in its frames' coordinates
        cap = open_video(path)
    except VideoError:
        return []
    out = []
    try:
        for f in picked.sort_values("frame_index").itertuples():
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(f.frame_index))
            ok, frame = cap.read()
            if not ok:
                continue
            side = int(max(f.w, f.h) * 1.3)
            cx, cy = f.x + f.w // 2, f.y + f.h // 2
            x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
            crop = frame[y0 : y0 + side, x0 : x0 + side]
            if crop.size == 0:
                continue
            ok, jpg = cv2.imencode(".jpg", cv2.resize(crop, (THUMB, THUMB)))
            if ok:
                uri = "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode()
                out.append((uri, float(f.fake_score)))
    finally:
        cap.release()
    return out


STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
.video{border:1px solid #ddd;border-radius:6px;padding:10px;margin:12px 0}
.thumbs img{margin:2px;border-radius:4px}.fake{color:#b00;font-weight:600}.real{color:#070}
.thumbs figure{display:inline-block;margin:2px;text-align:center;font-size:12px}
"""


def write_html(report_dir: str, out_path: str, top: int = 10) -> dict:
    """One self-contained HTML file: every plot and thumbnail is embedded."""
    s = summarize(report_dir, top)
    videos = load_videos(report_dir)
    faces = load_faces(report_dir, [v["path"] for v in s["most_suspicious"]])
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Deepfake audit: {e(report_dir)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Deepfake audit</h1><p>{e(report_dir)}, {s['videos']} videos</p>",
        "<h2>Summary</h2><table>",
    ]
    for k, v in sorted(s["by_status"].items()):
        parts.append(f"<tr><th>status {e(k)}</th><td>{v}</td></tr>")
    for k, v in sorted(s["by_label"].items()):
        parts.append(f"<tr><th>label {e(k)}</th><td>{v}</td></tr>")
    if s["last_run"]:
        r = s["last_run"]
        for key in ("run_id", "status", "scanned", "skipped", "missing", "started_at",
                    "finished_at", "videos_per_s", "model_id", "settings"):  # fmt: skip
            parts.append(f"<tr><th>last run {key}</th><td>{e(str(r.get(key)))}</td></tr>")
    parts.append("</table>")
    scored = videos[videos.status == "ok"]
    if len(scored):
        parts.append("<h2>Score distribution by label</h2>")
        parts.append(f"<img alt='score histogram' src='{score_histogram(scored)}'>")
    parts.append("<h2>Most suspicious videos</h2>")
    for rank, v in enumerate(s["most_suspicious"], start=1):
        mine = faces[faces.path == v["path"]]
        parts.append("<div class='video'>")
        parts.append(
            f"<h3>{rank}. {e(v['path'])}</h3><p>score <b>{v['fake_score']:.3f}</b>, "
            f"<span class='{e(str(v['label']))}'>{e(str(v['label']))}</span>, "
            f"{v['faces_scored']} faces scored</p>"
        )
        if len(mine):
            parts.append(f"<img alt='score over time' src='{score_over_time(mine)}'>")
            thumbs = thumbnails(v["path"], mine)
            if thumbs:
                parts.append("<div class='thumbs'>")
                for uri, score in thumbs:
                    parts.append(
                        f"<figure><img alt='face' src='{uri}'>"
                        f"<figcaption>{score:.2f}</figcaption></figure>"
                    )
                parts.append("</div>")
            else:
                parts.append("<p>(the video can no longer be read: no thumbnails)</p>")
        parts.append("</div>")
    for status, title in (
        ("error", "Videos that could not be scored"),
        ("missing", "Videos no longer found (earlier results in the history)"),
    ):
        rows = videos[videos.status == status]
        if len(rows):
            parts.append(f"<h2>{title}</h2><table>")
            for r in rows.itertuples():
                parts.append(f"<tr><td>{e(r.path)}</td><td>{e(str(r.error))}</td></tr>")
            parts.append("</table>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p><small>generated {generated} by deepfake-pipeline</small></p>")
    parts.append("</body></html>")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return s
