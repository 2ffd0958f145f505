"""The upload page: one image or video in, faces, scores, heatmaps and a verdict out.

    from pipeline.config import ServeConfig
    from pipeline.web import create_app
    app = create_app(ServeConfig("runs/r1/best.pt", reports_dir="reports/footage"))

Safe by default: uploads are capped, typed by their content (never their name), stored under
random names in a private temporary folder and deleted after analysis; nothing from a request
ever names a path; errors are JSON with a message and a 4xx status (500 for an internal error),
never a stack trace. Other web sites cannot use it through the person's browser: a POST from
another origin is refused, and with `trusted_hosts` (what `deepfake serve` sets on a loopback
address) so is a request for any other host name (DNS rebinding).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import tempfile
from urllib.parse import urlsplit

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pipeline.config import (
    DETECT_WIDTH,
    FRAMES,
    MAX_FACES,
    ScanConfig,
    ServeConfig,
    default_of,
    override_preprocess,
)
from pipeline.model import load_checkpoint, model_from_checkpoint
from pipeline.reports.runs import last_scan_settings
from pipeline.scoring import Scorer
from pipeline.web.analysis import SNIFF_BYTES, AnalysisError, Analyzer, sniff

ALLOWED = "jpg, png or webp images; mp4, mov, avi, webm, mts/m2ts, mpg, wmv, flv or mxf videos"
log = logging.getLogger(__name__)


def create_app(cfg: ServeConfig, trusted_hosts: list[str] | None = None) -> Flask:
    """The page for `cfg` (its settings: pipeline.config.ServeConfig). Without a report folder,
    the checkpoint's own threshold and detector and the scan's defaults judge an upload.
    `trusted_hosts`: the only host names answered (None: any)."""
    checkpoint, reports_dir, max_upload_mb = cfg.checkpoint, cfg.reports_dir, cfg.max_upload_mb
    ckpt = load_checkpoint(checkpoint)  # weights_only=True: no pickled code runs
    scorer = Scorer(model_from_checkpoint(ckpt), ckpt["preprocess"])
    scan = (last_scan_settings(reports_dir, ckpt["model_id"]) if reports_dir else None) or {}
    # The scan's words leave the default detect width unsaid; a YuNet model file is kept by
    # its name only, so its detector is not taken.
    from_scan = {"reuse_boxes": int(scan["reuse_boxes"])} if "reuse_boxes" in scan else {}
    if scan:
        from_scan["detect_width"] = int(scan.get("detect_width", DETECT_WIDTH))
    if "detector" in scan and "detector_model" not in scan:
        from_scan["detector"] = scan["detector"]
    if cfg.detect_width:  # given to the page: it wins
        from_scan["detect_width"] = cfg.detect_width
    preprocess = override_preprocess(ckpt["preprocess"], **from_scan)
    analyzer = Analyzer(
        scorer,
        ckpt,
        frames=cfg.frames or int(scan.get("frames", FRAMES)),
        max_faces=cfg.max_faces or int(scan.get("max_faces", MAX_FACES)),
        preprocess=preprocess,
        threshold=scan.get("threshold"),
        aggregate=scan.get("aggregate", default_of(ScanConfig, "aggregate")),
        top_k=int(scan.get("top_k", default_of(ScanConfig, "top_k"))),
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
