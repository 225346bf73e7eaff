"""`serve` latency: from a stroke's end to the new result shown in the page, through a real
browser; JSON.

For each model (the `paper` and `small` presets' generators, untrained: weights do not change
the time, so no training run is needed), the server is started in-process on a free loopback
port at the model's default work size, headless Chromium (Selenium) opens the page, opens a
1024 x 1024 sketch and paints strokes with the mouse. After each stroke the page records, with
`performance.now()`, the stroke's end, the request's start and the moment the new result image
has loaded; these are the page's own timings, read back from `window.mangaPix2pix.timings`.

Figures (all in one run, so the ratios compare like with like):
    * `colorize_ms`: the reference, the bare `Colorizer` call on the same decoded sketch and
      cue layer in this process (no HTTP, no PNG coding, no browser), measured between the
      other calls (interleaved, so that other jobs on the cores slow both alike);
    * `api_ms`: `POST /api/colorize` with the same sketch and cue PNGs from Python (HTTP,
      multipart, decode, colour, PNG encode), and its ratio to the reference;
    * `stroke_to_shown_ms`: stroke end to result shown in the browser (median, p90, max over
      the strokes), its ratio to the reference, and `stroke_to_request_ms` (the page's delay
      before it sends: encoding the cue layer as PNG). The minimum of each is given too: on
      shared cores it is the figure closest to an idle machine's.

Target on 2 CPU cores with the `paper` model: stroke end to result shown <= 0.8 s.

Example:

    python benchmarks/serve.py > serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["SE_OFFLINE"] = "true"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from machine_info import machine  # noqa: E402

SIZE = 1024
TARGET_MS = 800.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def line_art(size: int, seed: int = 0) -> np.ndarray:
    """Grey anti-aliased line art on white, `size x size` uint8."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 255, np.uint8)
    scale = max(1, size // 256)
    for _ in range(40):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(image, p1, p2, int(rng.integers(0, 100)), int(rng.integers(1, 3)) * scale,
                 cv2.LINE_AA)
    for _ in range(10):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 20, size // 5, 2))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, 30, scale,
                    cv2.LINE_AA)
    return image


def stroke_layer(size: int, strokes: int) -> np.ndarray:
    """An RGBA cue layer with `strokes` opaque strokes, as the page sends after as many."""
    rng = np.random.default_rng(1)
    layer = np.zeros((size, size, 4), np.uint8)
    for _ in range(strokes):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(layer, p1, p2, (*colour, 255), size // 40, cv2.LINE_AA)
    return layer


def run_dir(preset_name: str, folder: Path) -> Path:
    """An untrained generator of a preset, saved as a run directory the loader accepts."""
    from manga_pix2pix.config import preset
    from manga_pix2pix.models import build_models

    config = preset(preset_name)
    generator, _ = build_models(config.model)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config.to_json())
    generator.save(folder / "generator.keras")
    return folder


def encode_png(image: np.ndarray) -> bytes:
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def post(url: str, sketch: bytes, cues: bytes) -> bytes:
    boundary = uuid.uuid4().hex
    body = b""
    for name, data in (("sketch", sketch), ("cues", cues)):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url + "api/colorize", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {
        "median": round(statistics.median(values), 1),
        "p90": round(values[min(len(values) - 1, int(0.9 * len(values)))], 1),
        "max": round(values[-1], 1),
        "n": len(values),
    }


class Server:
    """The app on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, app):
        import uvicorn

        from manga_pix2pix.app.server import bind_socket, url_of

        self.sock = bind_socket("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_idle(driver, after_seq: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    script = ("const s = window.mangaPix2pix, r = document.getElementById('result');"
              "return document.getElementById('status').textContent === 'ready'"
              f" && s.seq > {after_seq} && r.dataset.seq === String(s.seq);")
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise RuntimeError("the page did not show a result in time")
        time.sleep(0.01)


def browser_strokes(url: str, sketch_path: Path, strokes: int, reference) -> tuple[list, list]:
    """Paints `strokes` strokes, waiting for each result, with a reference call after each.

    Returns:
        The page's timings, and the reference times (ms) measured between the strokes.
    """
    from selenium.webdriver.common.action_chains import ActionChains

    driver = browser()
    reference_ms = []
    try:
        driver.get(url)
        while driver.find_element("id", "status").text != "ready":
            time.sleep(0.05)
        driver.find_element("id", "sketch-input").send_keys(str(sketch_path))
        wait_idle(driver, 0)
        canvas = driver.find_element("id", "cue-canvas")
        rect = canvas.rect
        rng = np.random.default_rng(2)
        colours = ["#e04a3a", "#3a6fe0", "#f2c94c", "#4caf50", "#9b59b6", "#5b3a29"]
        for i in range(strokes):
            driver.execute_script(
                "const c = document.getElementById('brush-color');"
                f"c.value = '{colours[i % len(colours)]}'; c.dispatchEvent(new Event('input'));"
            )
            seq = driver.execute_script("return window.mangaPix2pix.seq")
            x = int(rng.uniform(-0.35, 0.25) * rect["width"])
            y = int(rng.uniform(-0.35, 0.25) * rect["height"])
            actions = ActionChains(driver).move_to_element_with_offset(canvas, x, y)
            actions.click_and_hold()
            for _ in range(8):
                actions.move_by_offset(int(rect["width"] * 0.012), int(rect["height"] * 0.008))
            actions.release().perform()
            wait_idle(driver, seq)
            reference_ms.append(reference())
        return driver.execute_script("return window.mangaPix2pix.timings"), reference_ms
    finally:
        driver.quit()


def measure(preset_name: str, folder: Path, strokes: int, repeats: int) -> dict:
    from manga_pix2pix.app.server import build_app
    from manga_pix2pix.imageio import decode_image
    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model

    model = run_dir(preset_name, folder / preset_name)
    sketch = line_art(SIZE)
    sketch_path = folder / "sketch.png"
    cv2.imwrite(str(sketch_path), sketch)
    sketch_png = sketch_path.read_bytes()
    cues_png = encode_png(stroke_layer(SIZE, strokes // 2))

    colorizer = Colorizer(load_model(model))
    rgb, cues = decode_image(sketch_png), decode_image(cues_png, keep_alpha=True)
    colorizer(rgb, cues)

    def reference() -> float:
        start = time.perf_counter()
        colorizer(rgb, cues)
        return 1000 * (time.perf_counter() - start)

    loaded = build_app(model)
    server = Server(loaded.app)
    try:
        post(server.url, sketch_png, cues_png)
        # Interleaved, so that other jobs on the cores slow both alike.
        api_reference, api = [], []
        for _ in range(repeats):
            api_reference.append(reference())
            start = time.perf_counter()
            post(server.url, sketch_png, cues_png)
            api.append(1000 * (time.perf_counter() - start))
        timings, page_reference = browser_strokes(server.url, sketch_path, strokes, reference)
    finally:
        server.stop()
    shown = [t["strokeToShownMs"] for t in timings]
    return {
        "preset": preset_name,
        "image_size": loaded.info.image_size,
        "work_size": loaded.info.work_size,
        "sketch": f"{SIZE}x{SIZE}",
        "colorize_ms": summary(api_reference + page_reference),
        "colorize_min_ms": round(min(api_reference + page_reference), 1),
        "api_ms": summary(api),
        "api_min_ms": round(min(api), 1),
        "api_ratio": round(statistics.median(api) / statistics.median(api_reference), 2),
        "stroke_to_request_ms": summary([t["strokeToRequestMs"] for t in timings]),
        "stroke_to_shown_ms": summary(shown),
        "stroke_to_shown_min_ms": round(min(shown), 1),
        "stroke_to_shown_ratio": round(
            statistics.median(shown) / statistics.median(page_reference), 2
        ),
        "measured_in": "headless Chromium (the page's own performance.now timings)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strokes", type=int, default=10, help="strokes painted per model")
    parser.add_argument("--repeats", type=int, default=8, help="reference and API calls")
    parser.add_argument("--presets", default="paper,small")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets.split(","):
            results[name] = measure(name, Path(tmp) / name, args.strokes, args.repeats)
    paper = results.get("paper")
    out = {
        "machine": machine(),
        "models": results,
        "target_ms": TARGET_MS,
        "target_met": None if paper is None
        else paper["stroke_to_shown_ms"]["median"] <= TARGET_MS,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
