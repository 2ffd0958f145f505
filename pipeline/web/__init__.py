"""The upload page: one image or video in, faces, scores, heatmaps and a verdict out.

    from pipeline.web import create_app
    app = create_app("runs/r1/best.pt", reports_dir="reports/footage")

Safe by default: uploads are capped, typed by their content (never their name), stored under
random names in a private temporary folder and deleted after analysis; nothing from a request
ever names a path; errors are JSON with a message and a 4xx status (500 for an internal error),
never a stack trace. Other web sites cannot use it through the person's browser: a POST from
another origin is refused, and with `trusted_hosts` (what `deepfake serve` sets on a loopback
address) so is a request for any other host name (DNS rebinding).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
from urllib.parse import urlsplit

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pipeline.config import DETECT_WIDTH
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports import last_scan_settings
from pipeline.scoring import Scorer
from pipeline.web.analysis import SNIFF_BYTES, AnalysisError, Analyzer, sniff

ALLOWED = "jpg, png or webp images; mp4, mov, avi, webm, mts/m2ts, mpg, wmv, flv or mxf videos"
log = logging.getLogger(__name__)


def create_app(
    checkpoint: str,
    reports_dir: str | None = None,
    max_upload_mb: float = 200,
    frames: int | None = None,
    max_faces: int | None = None,
    detect_width: int | None = None,
    trusted_hosts: list[str] | None = None,
) -> Flask:
    """With `reports_dir`, the page judges an upload with the settings of the last scan into
    it made with this checkpoint (threshold, aggregate, frames, faces, detector, detect width,
    reuse of boxes), so that it agrees with the report; `frames`, `max_faces` and
    `detect_width` given here win.
    Otherwise the checkpoint's own threshold and detector, the confident aggregate, 32 frames,
    2 faces."""
    ckpt = load_checkpoint(checkpoint)  # weights_only=True: no pickled code runs
    scorer = Scorer(model_from_checkpoint(ckpt), ckpt["preprocess"])
    scan = (last_scan_settings(reports_dir, ckpt["model_id"]) if reports_dir else None) or {}
    overrides = {}
    if "reuse_boxes" in scan:
        overrides["reuse_boxes"] = int(scan["reuse_boxes"])
    if scan:  # the scan's words leave the default detect width unsaid
        overrides["detect_width"] = int(scan.get("detect_width", DETECT_WIDTH))
    if "detector" in scan and "detector_model" not in scan:  # a model file: only its name is kept
        overrides["detector"] = scan["detector"]
    if detect_width:
        overrides["detect_width"] = detect_width
    analyzer = Analyzer(
        scorer,
        ckpt,
        frames=frames or int(scan.get("frames", 32)),
        max_faces=max_faces or int(scan.get("max_faces", 2)),
        preprocess=dataclasses.replace(ckpt["preprocess"], **overrides),
        threshold=scan.get("threshold"),
        aggregate=scan.get("aggregate", "confident"),
        top_k=int(scan.get("top_k", 8)),
    )
    settings_from = f"scan run {scan['run_id']}" if scan else "the checkpoint"
    upload_dir = tempfile.mkdtemp(prefix="deepfake-uploads-")  # mode 0700: ours alone
    atexit.register(shutil.rmtree, upload_dir, ignore_errors=True)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.config["TRUSTED_HOSTS"] = trusted_hosts
    app.config["UPLOAD_DIR"] = upload_dir
    app.config["ANALYZER"] = analyzer

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return error(413, f"the file is larger than the {max_upload_mb:g} MB upload limit")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("analysis failed")  # the details stay in the server's log
        return error(500, "the file could not be analysed (internal error)")

    @app.before_request
    def same_origin_only():
        # Browsers send Origin with every cross-site POST (a form or fetch on another site).
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and urlsplit(origin).netloc != request.host:
            abort(403, "requests from other web sites are refused")

    @app.get("/")
    def index():
        return render_template(
            "index.html",
            model_id=ckpt["model_id"],
            settings=analyzer.settings,
            settings_from=settings_from,
            max_upload_mb=max_upload_mb,
            reports=reports_dir is not None,
        )

    @app.post("/api/analyze")
    def analyze():
        upload = request.files.get("file")
        if upload is None:
            return error(400, "no file: send the image or video in the multipart field 'file'")
        head = upload.stream.read(SNIFF_BYTES)
        kind = sniff(head)
        if kind is None:
            return error(415, f"unsupported file type: send {ALLOWED}")
        # A random name in our private folder: the uploaded name never reaches the filesystem.
        path = os.path.join(upload_dir, secrets.token_hex(16) + "." + kind)
        try:
            with open(path, "wb") as f:
                f.write(head)
                shutil.copyfileobj(upload.stream, f)
            try:
                result = analyzer.analyze(path, kind, visuals=request.args.get("visuals") == "1")
            except AnalysisError as exc:
                return error(422, str(exc))
        finally:
            if os.path.exists(path):
                os.unlink(path)
        return jsonify(result)

    @app.get("/reports")
    def reports():
        if reports_dir is None:
            abort(404, "no report folder: start the server with --reports REPORT_DIR")
        from pipeline import summary
        from pipeline.reports import load_faces

        try:
            s = summary.summarize(reports_dir, top=20)
            faces = load_faces(reports_dir, [v["path"] for v in s["most_suspicious"]])
        except FileNotFoundError as exc:
            abort(404, str(exc))
        videos = [
            {**v, "thumbs": summary.thumbnails(v["path"], faces[faces.path == v["path"]], 4)}
            for v in s["most_suspicious"]
        ]
        return render_template("reports.html", s=s, videos=videos)

    return app
