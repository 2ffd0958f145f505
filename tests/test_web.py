"""The upload page: Flask test-client tests of the API and its errors, and a real browser."""

import os
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from fixtures import (
    face_frame,
    face_photo,
    wide_shot_frame,
    write_phone_photo,
    write_phone_video,
    write_video,
)

from pipeline.config import Preprocess, ServeConfig
from pipeline.explain import grad_cam
from pipeline.model import build_model
from pipeline.reports import load_videos
from pipeline.web import create_app


def jpeg(img) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture(scope="module")
def app(checkpoint, tmp_path_factory):
    return create_app(ServeConfig(checkpoint, max_upload_mb=5, frames=4))


@pytest.fixture()
def client(app):
    return app.test_client()


def post(client, data: bytes, name="upload.bin", visuals=False):
    from io import BytesIO

    url = "/api/analyze" + ("?visuals=1" if visuals else "")
    return client.post(url, data={"file": (BytesIO(data), name)},
                       content_type="multipart/form-data")  # fmt: skip


def test_a_face_photo_gets_faces_scores_and_a_verdict(client, app):
    r = post(client, jpeg(face_photo()), "hopper.jpg")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["verdict"] in ("fake", "real") and 0 <= body["fake_score"] <= 1
    assert body["frames_sampled"] == 1 and len(body["faces"]) >= 1
    face = body["faces"][0]
    assert face["frame_index"] == 0 and len(face["box"]) == 4 and 0 <= face["fake_score"] <= 1
    assert len(body["model_id"]) == 16
    assert body["settings"].endswith("aggregate=confident threshold=0.5")  # the checkpoint's
    assert os.listdir(app.config["UPLOAD_DIR"]) == []  # deleted after analysis


def test_visuals_hold_the_boxed_frame_and_a_heatmap_per_face(client):
    body = post(client, cv2.imencode(".png", face_frame(320, 240))[1].tobytes(), visuals=True).json
    v = body["visuals"]
    assert v["frame"].startswith("data:image/jpeg;base64,")
    assert len(v["faces"]) == len(body["faces"]) >= 1
    assert v["faces"][0]["heatmap"].startswith("data:image/jpeg;base64,")


def test_a_video_gets_faces_over_time_and_a_chart(client, tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=12)
    with open(path, "rb") as f:
        r = post(client, f.read(), "clip.mp4", visuals=True)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["frames_sampled"] == 4
    assert len({f["frame_index"] for f in body["faces"]}) >= 3
    assert body["visuals"]["chart"].startswith("data:image/png;base64,")
    assert body["visuals"]["frame"].startswith("data:image/jpeg;base64,")  # read in the helper


@pytest.mark.parametrize("name", ["00001.MTS", "clip.mpg", "clip.wmv"])
def test_camcorder_and_older_formats_are_videos_too(client, tmp_path, name):
    path = write_video(tmp_path / name, frames=12)  # the container follows the extension
    with open(path, "rb") as f:
        r = post(client, f.read(), name)
    assert r.status_code == 200, r.json
    # an MPEG program stream's frame count is an estimate: the sampling looks past it
    assert r.json["frames_sampled"] >= 4 and len(r.json["faces"]) >= 3


def test_phone_photos_and_videos_are_judged_upright(client, tmp_path):
    # Both store sideways pixels and a rotation (EXIF orientation, the mp4 display matrix):
    # read as stored, the face lies on its side and is not found.
    photo, _ = write_phone_photo(tmp_path / "phone.jpg")
    video = write_phone_video(tmp_path / "phone.mp4", frames=12)
    for path, frames in ((photo, 1), (video, 3)):
        with open(path, "rb") as f:
            body = post(client, f.read(), os.path.basename(path)).json
        assert body["verdict"] in ("fake", "real"), body
        assert len({face["frame_index"] for face in body["faces"]}) >= frames
        for face in body["faces"]:  # inside the upright 272 x 352 picture
            x, y, w, h = face["box"]
            assert x + w <= 272 + 2 and y + h <= 352 + 2 and min(w, h) > 50


def test_no_face_is_said_plainly(client):
    plain = np.full((240, 320, 3), 120, np.uint8)
    body = post(client, jpeg(plain)).json
    assert body["verdict"] == "no_face" and body["fake_score"] is None
    assert "No face" in body["message"]


def test_a_face_too_small_for_the_detect_width_is_explained_and_found_when_asked(
    client, checkpoint
):
    wide = jpeg(wide_shot_frame())
    body = post(client, wide, "wide.jpg").json
    assert body["verdict"] == "no_face"
    assert "narrower than about 144 px" in body["message"] and "--detect-width" in body["message"]
    wider = create_app(ServeConfig(checkpoint, frames=4, detect_width=960)).test_client()
    body = post(wider, wide, "wide.jpg").json
    assert body["verdict"] in ("fake", "real") and len(body["faces"]) == 1
    assert "detect_width=960" in body["settings"]
    assert "message" not in post(client, jpeg(face_photo())).json  # found: nothing to explain


def test_serve_hands_its_options_to_the_page(checkpoint, monkeypatch):
    from click.testing import CliRunner
    from flask import Flask

    from jobs.cli import cli

    served = {}
    monkeypatch.setattr(Flask, "run", lambda app, **kw: served.update(app=app, **kw))
    args = ["serve", "--checkpoint", checkpoint, "--port", "5123", "--frames", "5",
            "--max-faces", "3", "--detect-width", "960"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    a = served["app"].config["ANALYZER"]
    assert (a.frames, a.max_faces, a.preprocess.detect_width) == (5, 3, 960)
    assert (served["host"], served["port"], served["debug"]) == ("127.0.0.1", 5123, False)
    bad = CliRunner().invoke(cli, [*args[:-1], "16"])
    assert bad.exit_code == 2 and "--detect-width" in bad.output


def test_missing_file_is_400(client):
    r = client.post("/api/analyze", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and "no file" in r.json["error"]


def test_type_comes_from_the_content_not_the_name(client):
    r = post(client, b"just some text, not a picture", "photo.jpg")
    assert r.status_code == 415 and "unsupported file type" in r.json["error"]


def test_a_transport_stream_is_told_by_three_packets_not_one_byte():
    from pipeline.web.analysis import sniff

    gif = bytearray(b"GIF89a" + bytes(600))
    gif[188] = 0x47  # a 'G' where a second packet would start: still no video
    assert sniff(bytes(gif)) is None
    assert sniff((b"\x47" + bytes(187)) * 3) == "mts"
    assert sniff((b"\x00" * 4 + b"\x47" + bytes(187)) * 3) == "mts"  # 192-byte packets


def test_too_large_is_413_with_a_message(client):
    r = post(client, b"\xff\xd8\xff" + b"0" * (6 * 1024 * 1024), "big.jpg")
    assert r.status_code == 413 and "5 MB" in r.json["error"]


def test_corrupt_video_is_422_without_a_stack_trace(client, tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=12)
    with open(path, "rb") as f:
        broken = f.read()[:3000]  # an mp4 header, then nothing: the index is missing
    r = post(client, broken, "clip.mp4")
    assert r.status_code == 422 and "could not be read" in r.json["error"]
    assert "cut short: it stops at byte 3,000" in r.json["error"]  # and why, in words
    assert "Traceback" not in r.get_data(as_text=True)


def png_of_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A PNG of that size, all black: a few hundred bytes a thousand rows (`rows`: only the
    first ones, as a truncated upload; whatever reads the header sees the full size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte, then RGB
    idat = b"".join(z.compress(row) for _ in range(height if rows is None else rows))
    idat += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    end = chunk(b"IEND", b"") if rows is None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + end


def test_an_image_too_large_to_decode_safely_is_refused_from_its_header(client):
    bomb = png_of_zeros(10000, 6000)  # 180 MB decoded, from a file of a fraction of 1 MB
    assert len(bomb) < 1024 * 1024
    r = post(client, bomb, "bomb.png")
    assert r.status_code == 422 and "10000 x 6000 pixels; at most 50 megapixels" in r.json["error"]
    r = post(client, png_of_zeros(30000, 30000, rows=10), "bomb.png")
    assert r.status_code == 422 and "far too large" in r.json["error"]
    # A header Pillow cannot read (a colour profile inflating past its limit) but OpenCV
    # would decode whatever its size: not decoded blind.
    icc = b"iCCP" + b"icc\0\0" + zlib.compress(bytes(3_000_000), 9)
    icc = struct.pack(">I", len(icc) - 4) + icc + struct.pack(">I", zlib.crc32(icc))
    small = cv2.imencode(".png", np.zeros((100, 100, 3), np.uint8))[1].tobytes()
    r = post(client, small[:33] + icc + small[33:], "profile.png")  # after the IHDR chunk
    assert r.status_code == 422 and "could not be read" in r.json["error"]


def test_an_extreme_strip_of_an_image_is_no_face_not_a_crash(client):
    strip = np.full((3, 5000, 3), 120, np.uint8)
    r = post(client, cv2.imencode(".png", strip)[1].tobytes(), "strip.png")
    assert r.status_code == 200 and r.json["verdict"] == "no_face"


def test_a_phone_photo_in_heic_is_415_not_a_broken_video(client):
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100
    r = post(client, heic, "IMG_0001.HEIC")
    assert r.status_code == 415 and "unsupported file type" in r.json["error"]


def test_other_web_sites_cannot_use_the_page_through_the_browser(checkpoint):
    local = create_app(ServeConfig(checkpoint, frames=4), trusted_hosts=["127.0.0.1", "localhost"])
    c = local.test_client()
    assert c.get("/", headers={"Host": "localhost:5000"}).status_code == 200
    # DNS rebinding: a site's own name pointed at 127.0.0.1
    assert c.get("/", headers={"Host": "attacker.example:5000"}).status_code == 400
    r = c.post("/api/analyze", data={}, headers={"Origin": "http://attacker.example"},
               content_type="multipart/form-data")  # fmt: skip
    assert r.status_code == 403 and "other web sites" in r.json["error"]
    r = c.post("/api/analyze", data={}, headers={"Origin": "http://localhost"},
               content_type="multipart/form-data")  # fmt: skip
    assert r.status_code == 400  # same origin: on to the missing file


def test_with_a_report_uploads_are_judged_with_its_scans_settings(checkpoint, tmp_path):
    from pipeline.model import load_checkpoint
    from pipeline.reports.runs import write_run_record

    report = str(tmp_path)
    ours = {"run_id": "20261101T000000Z-aaaaaa", "status": "completed",
            "model_id": load_checkpoint(checkpoint)["model_id"],
            "settings": "frames=3 max_faces=1 detector=haar detect_width=960 reuse_boxes=0 "
                        "aggregate=max "
                        "threshold=0.734182", "threshold": 0.73418236,
            "started_at": "2026-11-01T00:00:00+00:00"}  # fmt: skip
    write_run_record(report, ours)
    other_model = {**ours, "run_id": "20261102T000000Z-bbbbbb", "model_id": "another",
                   "settings": "frames=9 aggregate=mean threshold=0.1", "threshold": 0.1,
                   "started_at": "2026-11-02T00:00:00+00:00"}  # fmt: skip
    write_run_record(report, other_model)  # later, but another model's: not taken

    app = create_app(ServeConfig(checkpoint, reports_dir=report))
    a = app.config["ANALYZER"]
    assert (a.threshold, a.aggregate, a.frames, a.max_faces) == (0.73418236, "max", 3, 1)
    assert (a.preprocess.detector, a.preprocess.reuse_boxes) == ("haar", 0)
    assert a.preprocess.detect_width == 960
    page = app.test_client().get("/").get_data(as_text=True)
    assert "aggregate=max" in page and "scan run 20261101T000000Z-aaaaaa" in page
    body = post(app.test_client(), jpeg(face_photo()), "hopper.jpg").json
    assert body["threshold"] == 0.73418236
    assert body["settings"].startswith(
        "frames=3 max_faces=1 detector=haar detect_width=960 reuse_boxes=0"
    )
    assert (
        create_app(ServeConfig(checkpoint, reports_dir=report, frames=5)).config["ANALYZER"].frames
        == 5
    )


def test_a_path_in_the_file_name_never_reaches_the_filesystem(client, app, tmp_path):
    before = set(os.listdir(os.path.dirname(app.config["UPLOAD_DIR"])))
    r = post(client, jpeg(face_photo()), "../../x.mp4")
    assert r.status_code == 200  # treated by its content: a JPEG
    after = set(os.listdir(os.path.dirname(app.config["UPLOAD_DIR"])))
    assert after == before and not os.path.exists("x.mp4")
    assert os.listdir(app.config["UPLOAD_DIR"]) == []


def test_grad_cam_points_somewhere():
    crops = np.stack([cv2.cvtColor(face_frame(128, 128), cv2.COLOR_BGR2RGB)] * 2)
    heat = grad_cam(build_model().eval(), crops, Preprocess(input_size=128))
    assert heat.shape == (2, 128, 128) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.01


def test_reports_view_lists_the_latest_audit(ray_session, checkpoint, tmp_path):
    from click.testing import CliRunner

    from jobs.cli import cli

    write_video(tmp_path / "v" / "a.mp4", frames=6)
    write_video(tmp_path / "v" / "b.mp4", frames=6)
    (tmp_path / "v" / "c.mp4").write_text("broken")
    report = tmp_path / "report"
    args = ["scan", str(tmp_path / "v"), "--out", str(report), "--checkpoint", checkpoint]
    assert CliRunner().invoke(cli, args + ["--frames", "2", "--quiet"]).exit_code == 0
    page = (
        create_app(ServeConfig(checkpoint, reports_dir=str(report))).test_client().get("/reports")
    )
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    top = load_videos(str(report)).iloc[0].path
    assert "status error</th><td>1" in text and "status ok</th><td>2" in text
    assert text.index(top) < text.index(load_videos(str(report)).iloc[1].path)
    assert "data:image/jpeg;base64," in text


def test_reports_view_without_a_report_folder_is_404(client):
    r = client.get("/reports")
    assert r.status_code == 404 and "--reports" in r.json["error"]


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="make test installs Debian's chromium")
def test_a_person_uploads_a_photo_in_a_real_browser(app, tmp_path):
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    photo = tmp_path / "hopper.jpg"
    photo.write_bytes(jpeg(face_photo()))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.set_input_files("#file", str(photo))
            page.click("#analyze")
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            verdict = page.inner_text("#verdict")
            assert verdict.startswith(("Likely FAKE", "Likely real"))
            page.wait_for_selector("img.heatmap", timeout=10_000)
            assert page.eval_on_selector("img.heatmap", "el => el.naturalWidth") > 0
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    assert (tmp_path / "page.png").stat().st_size > 10_000
