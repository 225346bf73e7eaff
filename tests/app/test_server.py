"""The serve API through Starlette's test client and a real uvicorn server: results, every
error status, limits, the queue and timeouts."""

from __future__ import annotations

import json
import re
import socket
import struct
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from app_helpers import WORK_SIZE, flat_drawing
from click.testing import CliRunner
from starlette.testclient import TestClient

from manga_pix2pix.app.server import ModelInfo, ServeSettings, build_app, create_app
from manga_pix2pix.cli import main
from manga_pix2pix.imageio import MAX_PIXELS, decode_image

BASE = "http://127.0.0.1:8000"


def png(image: np.ndarray) -> bytes:
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def drawing(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """Gray line art of a flat drawing."""
    return flat_drawing(np.random.default_rng(seed), height, width)[1]


def strokes(height: int = 96, width: int = 128) -> np.ndarray:
    """An RGBA cue layer with two strokes on transparency."""
    cues = np.zeros((height, width, 4), np.uint8)
    cv2.line(cues, (10, 20), (50, 70), (220, 50, 40, 255), 9, cv2.LINE_AA)
    cv2.line(cues, (80, 15), (115, 80), (40, 70, 220, 255), 9, cv2.LINE_AA)
    return cues


def header_only_png(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming `width x height`, with no image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + body
            + struct.pack(">I", zlib.crc32(body)))


def post(client, sketch: bytes | None = None, cues: bytes | None = None, **extra):
    files = {}
    if sketch is not None:
        files["sketch"] = ("sketch.png", sketch, "image/png")
    if cues is not None:
        files["cues"] = ("cues.png", cues, "image/png")
    return client.post("/api/colorize", files=files, data=extra or None)


def assert_json_error(response, status: int, *words: str):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    assert "Traceback" not in response.text
    for word in words:
        assert word in body["error"], body


@pytest.fixture(scope="module")
def loaded(stroke_run):
    return build_app(stroke_run, work_size=WORK_SIZE)


@pytest.fixture(scope="module")
def client(loaded):
    with TestClient(loaded.app, base_url=BASE) as client:
        yield client


def small_app(stroke_colorizer, colorize=None, **settings) -> TestClient:
    info = ModelInfo(image_size=32, uses_cues=True, use_cue_mask=True, preset="smoke",
                     work_size=WORK_SIZE, norm_stats="moving", name="m", kind="run")
    return TestClient(create_app(colorize or stroke_colorizer, info, ServeSettings(**settings)),
                      base_url=BASE)


class Gate:
    """Wraps a colorizer so that each call waits until the test opens the gate."""

    def __init__(self, colorizer):
        self.colorizer = colorizer
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, sketch, cues, background):
        self.calls += 1
        assert self.open.wait(30), "the test never opened the gate"
        return self.colorizer(sketch, cues, background)


def test_model_health_and_page(client):
    facts = client.get("/api/model").json()
    assert facts["image_size"] == 32 and facts["uses_cues"] is True
    assert facts["preset"] == "smoke" and facts["work_size"] == WORK_SIZE
    assert facts["max_pixels"] == MAX_PIXELS and facts["max_upload_bytes"] == 25 * 2**20
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ("sketch-input", "cue-canvas", "brush-color", "brush-size", "no-cues",
                    "result", "download-result", "download-cues", "status"):
        assert f'id="{element}"' in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from elsewhere
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for name in ("serve.js", "serve.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_matches_the_colorize_command(client, stroke_run, tmp_path):
    sketch_path, cues_path = tmp_path / "sketch.png", tmp_path / "cues.png"
    sketch_path.write_bytes(png(drawing(1)))
    cues_path.write_bytes(png(strokes()))
    cases = [
        (["--cues", str(cues_path)], {"cues": cues_path.read_bytes()}),
        (["--no-cues"], {}),
        (["--no-cues"], {"cues": cues_path.read_bytes(), "no_cues": "1"}),
        (["--no-cues", "--background", "paper"], {"no_cues": "1", "paper": "1"}),
        (["--cues", str(cues_path), "--background", "paper"],
         {"cues": cues_path.read_bytes(), "paper": "on"}),
        (["--no-cues", "--background", "model"], {"paper": "0"}),
        (["--cues", str(cues_path), "--background", "model"],
         {"cues": cues_path.read_bytes(), "background": "model"}),
        (["--no-cues", "--background", "auto"], {"no_cues": "1", "background": "auto"}),
    ]
    results = []
    for cue_args, form in cases:
        out = tmp_path / "colour.png"
        result = CliRunner().invoke(main, ["colorize", str(sketch_path), *cue_args, "--model",
                                           str(stroke_run), "--work-size", str(WORK_SIZE),
                                           "-o", str(out)])
        assert result.exit_code == 0, result.output
        extra = {k: form[k] for k in ("no_cues", "paper", "background") if k in form}
        response = post(client, sketch_path.read_bytes(), form.get("cues"), **extra)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        served = decode_image(response.content)
        assert served.shape == (96, 128, 3)
        np.testing.assert_array_equal(served, decode_image(out.read_bytes()))
        results.append(served)
    assert np.abs(results[0].astype(int) - results[1]).max() > 20  # the cues mattered
    # Paper left white around the figure: more white pixels than the model's own colours.
    assert (results[3] == 255).all(-1).sum() > (results[5] == 255).all(-1).sum() + 500
    # The default, auto: paper without cues, the model's colours with strokes.
    np.testing.assert_array_equal(results[1], results[3])
    np.testing.assert_array_equal(results[0], results[6])


def test_other_formats_and_sizes_come_back_at_their_size(client):
    art = drawing(2, 75, 201)
    ok, jpeg = cv2.imencode(".jpg", art)
    for data in (jpeg.tobytes(), png(np.dstack([art, art, art, np.full_like(art, 200)]))):
        response = post(client, data)
        assert response.status_code == 200, response.text
        assert decode_image(response.content).shape == (75, 201, 3)


def _multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for name, data in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def error_cases():
    good = png(drawing(3))
    tiff = b"II*\x00" + b"\x00" * 64
    return {
        "not an image": (lambda c: post(c, b"this is not an image"), 400, "not an image"),
        "empty file": (lambda c: post(c, b""), 400, "empty"),
        "truncated": (lambda c: post(c, good[: len(good) // 2]), 400, "truncated"),
        "header only": (lambda c: post(c, header_only_png(64, 64)), 400, "truncated"),
        "truncated cues": (lambda c: post(c, good, png(strokes())[:60]), 400, "cues"),
        "no sketch": (lambda c: post(c, None, png(strokes())), 400, "sketch"),
        "sketch as text": (lambda c: c.post("/api/colorize", data={"sketch": "x"},
                                            files={"cues": ("c.png", good, "image/png")}),
                           400, "expected a file"),
        "unknown field": (lambda c: c.post("/api/colorize", files={
            "sketch": ("s.png", good, "image/png"), "cue": ("c.png", good, "image/png")}),
                          400, "unknown form field"),
        "bad no_cues": (lambda c: post(c, good, no_cues="maybe"), 400, "no_cues"),
        "bad paper": (lambda c: post(c, good, paper="white"), 400, "paper"),
        "bad background": (lambda c: post(c, good, background="white"), 400, "background"),
        "background and paper": (lambda c: post(c, good, background="model", paper="1"),
                                 400, "either"),
        "malformed form": (lambda c: c.post(
            "/api/colorize",
            content=b"--x\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--x--\r\n",
            headers={"content-type": "multipart/form-data; boundary=x"}), 400, "multipart"),
        "over the pixel cap": (lambda c: post(c, header_only_png(9000, 8000)), 413, "pixels"),
        "cues over the pixel cap": (lambda c: post(c, good, header_only_png(10_000, 10_000)),
                                    413, "cues"),
        "json body": (lambda c: c.post("/api/colorize", json={"sketch": "x"}), 415, "multipart"),
        "text part": (lambda c: c.post("/api/colorize", files={
            "sketch": ("s.txt", good, "text/plain")}), 415, "text/plain"),
        "tiff": (lambda c: post(c, tiff), 415, "TIFF"),
        "unknown path": (lambda c: c.get("/api/nothing"), 404, ""),
        "wrong method": (lambda c: c.get("/api/colorize"), 405, ""),
        "foreign host": (lambda c: c.get("/api/model", headers={"host": "evil.example:8000"}),
                         403, "Host"),
        "rebound host": (lambda c: c.post("/api/colorize", headers={"host": "attacker.test"},
                                          files={"sketch": ("s.png", good, "image/png")}),
                         403, "Host"),
        "foreign origin": (lambda c: c.post("/api/colorize",
                                            headers={"origin": "https://evil.example"},
                                            files={"sketch": ("s.png", good, "image/png")}),
                           403, "origin"),
    }


@pytest.mark.parametrize("case", list(error_cases()))
def test_every_error_is_json_with_its_status_and_the_server_keeps_serving(client, case):
    send, status, words = error_cases()[case]
    assert_json_error(send(client), status, words)
    response = post(client, png(drawing(4)))
    assert response.status_code == 200, response.text


def test_loopback_names_are_accepted_as_host(client):
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    origin = {"origin": "http://localhost:8000"}
    assert post(client, png(drawing(5)), **{}).status_code == 200
    assert client.get("/api/model", headers=origin).status_code == 200


def test_the_bound_address_is_accepted_as_host(stroke_colorizer):
    with small_app(stroke_colorizer, host="192.168.7.9") as client:
        assert client.get("/healthz", headers={"host": "192.168.7.9:8000"}).status_code == 200
        assert client.get("/healthz", headers={"host": "192.168.7.10"}).status_code == 403


def test_cues_to_a_cue_free_model_are_a_conflict(cue_free_model):
    loaded = build_app(cue_free_model)
    assert loaded.info.uses_cues is False and loaded.info.preset == "smoke"
    with TestClient(loaded.app, base_url=BASE) as client:
        assert client.get("/api/model").json()["uses_cues"] is False
        assert_json_error(post(client, png(drawing(6)), png(strokes())), 409, "without cues")
        assert post(client, png(drawing(6))).status_code == 200
        assert post(client, png(drawing(6)), png(strokes()), no_cues="1").status_code == 200


def test_the_upload_cap_holds_with_and_without_content_length(stroke_colorizer):
    sketch = png(drawing(7))
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)
    big = png(noise)  # about 120 kB: over a 64 kB cap
    assert len(sketch) < 30_000 < 65_536 < len(big)
    with small_app(stroke_colorizer, max_upload_bytes=65_536) as client:
        assert_json_error(post(client, big), 413, "limit")
        boundary = "b0undary"
        body = _multipart(boundary, [("sketch", big)])

        def chunks():
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        response = client.post("/api/colorize", content=chunks(), headers={
            "content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in response.request.headers
        assert_json_error(response, 413, "limit")
        small = _multipart(boundary, [("sketch", sketch)])
        response = client.post("/api/colorize", content=iter([small]), headers={
            "content-type": f"multipart/form-data; boundary={boundary}"})
        assert response.status_code == 200, response.text


def test_nothing_from_a_request_is_written_to_disk(client, monkeypatch):
    # Starlette spools form files over 1 MB to a temporary file; the app keeps them in memory.
    created = []
    real = tempfile.TemporaryFile

    def spy(*args, **kwargs):
        created.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    noise = np.random.default_rng(1).integers(0, 256, (700, 700, 3), np.uint8)
    data = png(noise)
    assert len(data) > 1.2 * 2**20
    response = post(client, data)
    assert response.status_code == 200, response.text
    assert decode_image(response.content).shape == (700, 700, 3)
    assert created == []


def test_twenty_parallel_requests_are_all_answered_correctly(client, stroke_colorizer):
    jobs = []
    for i in range(20):
        height, width = 64 + 8 * (i % 5), 64 + 16 * (i % 4)
        art = drawing(100 + i, height, width)
        cues = strokes(height, width) if i % 2 else None
        jobs.append((art, cues))

    def send(job):
        art, cues = job
        return post(client, png(art), None if cues is None else png(cues))

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, jobs))
    for (art, cues), response in zip(jobs, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = stroke_colorizer(np.dstack([art] * 3), cues)
        np.testing.assert_array_equal(decode_image(response.content), expected)


def test_a_full_queue_answers_503_at_once(stroke_colorizer):
    gate = Gate(stroke_colorizer)
    with small_app(stroke_colorizer, gate, queue_size=2) as client:
        worker = client.app.state.worker
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(post, client, png(drawing(8))) for _ in range(2)]
            deadline = time.monotonic() + 10
            while worker.held < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert worker.held == 2
            start = time.monotonic()
            assert_json_error(post(client, png(drawing(8))), 503, "busy")
            assert time.monotonic() - start < 2.0
            assert client.get("/healthz").status_code == 200  # the event loop is free
            gate.open.set()
            assert [f.result().status_code for f in held] == [200, 200]
        assert post(client, png(drawing(8))).status_code == 200


def test_a_colouring_that_takes_too_long_is_a_504(stroke_colorizer):
    gate = Gate(stroke_colorizer)
    with small_app(stroke_colorizer, gate, request_timeout=0.5) as client:
        start = time.monotonic()
        assert_json_error(post(client, png(drawing(9))), 504, "longer than")
        assert time.monotonic() - start < 5.0
        gate.open.set()
        assert post(client, png(drawing(9))).status_code == 200


def _raw_request(port: int, body: bytes, boundary: str = "b0undary") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (f"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), rest


def test_a_body_that_stalls_is_a_408(stroke_colorizer, live_server):
    info = ModelInfo(32, True, True, "smoke", WORK_SIZE, "moving", "m", "run")
    server = live_server(create_app(stroke_colorizer, info, ServeSettings(body_timeout=0.5)))
    body = _multipart("b0undary", [("sketch", png(drawing(10)))])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (f"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:100])  # and then nothing
    status, payload = _read_response(sock)
    sock.close()
    assert status == 408 and "did not arrive" in json.loads(payload)["error"]
    sock = _raw_request(server.port, body)
    assert _read_response(sock)[0] == 200
    sock.close()


def test_a_request_whose_client_left_is_dropped_from_the_queue(stroke_colorizer, live_server):
    gate = Gate(stroke_colorizer)
    info = ModelInfo(32, True, True, "smoke", WORK_SIZE, "moving", "m", "run")
    app = create_app(gate, info, ServeSettings())
    server = live_server(app)
    body = _multipart("b0undary", [("sketch", png(drawing(11)))])
    first = _raw_request(server.port, body)
    deadline = time.monotonic() + 10
    while gate.calls < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gate.calls == 1
    stale = _raw_request(server.port, body)
    while app.state.worker.held < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stale.close()  # as the page does when a newer stroke ends
    while app.state.worker.held > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.worker.held == 1
    gate.open.set()
    assert _read_response(first)[0] == 200
    first.close()
    last = _raw_request(server.port, body)
    assert _read_response(last)[0] == 200
    last.close()
    assert gate.calls == 2  # the first and the last: the stale one never ran


def test_an_app_serves_again_after_a_shutdown(stroke_colorizer):
    client = small_app(stroke_colorizer)
    for _ in range(2):
        with client:  # startup, requests, shutdown (which stops the worker thread)
            assert post(client, png(drawing(12))).status_code == 200
