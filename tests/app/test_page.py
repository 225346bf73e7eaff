"""The page in a real browser: headless Chromium driven by Selenium, against a live server.

Skipped where Chromium is not installed (the skip says how to install it); `.ci/run` installs
it and sets MANGA_PIX2PIX_REQUIRE_BROWSER, which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time

import cv2
import numpy as np
import pytest
from app_helpers import SCREENSHOT, WORK_SIZE
from click.testing import CliRunner
from starlette.responses import JSONResponse

from manga_pix2pix.app.server import build_app
from manga_pix2pix.cli import main
from manga_pix2pix.imageio import decode_image

pytestmark = pytest.mark.slow  # a browser, a live server and a model trained for the tests

HEIGHT, WIDTH = 192, 256
RED, BLUE, GREEN = (220, 50, 40), (40, 70, 220), (40, 200, 60)
#: The strokes, in sketch pixels: one in each half of the drawing.
LEFT_STROKE = [(40, 50), (60, 80), (80, 110), (95, 140)]
RIGHT_STROKE = [(165, 50), (185, 80), (205, 110), (220, 140)]


def two_halves() -> np.ndarray:
    """Line art of two regions (a vertical divider), each with a small ornament."""
    art = np.full((HEIGHT, WIDTH), 255, np.uint8)
    cv2.line(art, (WIDTH // 2, 0), (WIDTH // 2, HEIGHT), 0, 3, cv2.LINE_AA)
    cv2.ellipse(art, (64, 160), (30, 14), 0, 0, 360, 30, 2, cv2.LINE_AA)
    cv2.ellipse(art, (192, 28), (26, 12), 0, 0, 360, 30, 2, cv2.LINE_AA)
    return art


def wait(driver, condition, timeout: float = 60.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; status: "
                         f"{driver.find_element('id', 'status').text!r}, message: "
                         f"{driver.find_element('id', 'message').text!r}")


def idle_with_result(driver, after_seq: int) -> bool:
    return driver.execute_script(
        "const s = window.mangaPix2pix, r = document.getElementById('result');"
        "return document.getElementById('status').textContent === 'ready'"
        f" && s.seq > {after_seq} && r.dataset.seq === String(s.seq);"
    )


def seq(driver) -> int:
    return driver.execute_script("return window.mangaPix2pix.seq")


def paint(driver, points, size=(HEIGHT, WIDTH)):
    """Drags the mouse along `points` (sketch pixels) over the cue canvas of a `size` sketch."""
    from selenium.webdriver.common.action_chains import ActionChains

    height, width = size
    canvas = driver.find_element("id", "cue-canvas")
    rect = canvas.rect
    sx, sy = rect["width"] / width, rect["height"] / height

    def offset(p):  # from the element's centre, in CSS pixels
        return int(round((p[0] - width / 2) * sx)), int(round((p[1] - height / 2) * sy))

    actions = ActionChains(driver)
    actions.move_to_element_with_offset(canvas, *offset(points[0])).click_and_hold()
    for prev, p in zip(points, points[1:], strict=False):
        (x0, y0), (x1, y1) = offset(prev), offset(p)
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()


def set_colour(driver, rgb):
    from selenium.webdriver.common.keys import Keys

    hex_text = "#" + "".join(f"{v:02x}" for v in rgb)
    hex_field = driver.find_element("id", "brush-hex")
    hex_field.click()
    hex_field.send_keys(Keys.CONTROL, "a")
    hex_field.send_keys(hex_text, Keys.ENTER)
    assert driver.find_element("id", "brush-color").get_attribute("value") == hex_text


def shown_result(driver) -> np.ndarray:
    """The result image as the page holds it, read back through a canvas."""
    url = driver.execute_script(
        "const r = document.getElementById('result'), c = document.createElement('canvas');"
        "c.width = r.naturalWidth; c.height = r.naturalHeight;"
        "c.getContext('2d').drawImage(r, 0, 0); return c.toDataURL('image/png');"
    )
    return decode_image(base64.b64decode(url.split(",", 1)[1]))


def downloaded(folder, name: str, timeout: float = 30.0) -> bytes:
    path = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path.read_bytes()
        time.sleep(0.05)
    raise AssertionError(f"{name} was not downloaded; found {sorted(os.listdir(folder))}")


def distance(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


@pytest.fixture(scope="module")
def served(stroke_run):
    return build_app(stroke_run, work_size=WORK_SIZE)


def test_paint_two_strokes_and_download_what_colorize_reproduces(
    browser, live_server, served, stroke_run, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select

    server = live_server(served.app)
    sketch_path = tmp_path / "drawing.png"
    cv2.imwrite(str(sketch_path), two_halves())

    browser.get(server.url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    assert "smoke" in browser.find_element("id", "model-info").text
    # The hidden file input still takes a path, as a user's file picker would give it.
    browser.find_element("id", "sketch-input").send_keys(str(sketch_path))
    wait(browser, lambda d: idle_with_result(d, 0), what="the first result (no strokes)")
    first_src = browser.find_element("id", "result").get_attribute("src")
    assert browser.execute_script("return document.getElementById('result').naturalWidth") == WIDTH

    # Keyboard: ] grows the brush, B selects it again after E.
    size = browser.find_element("id", "brush-size")
    before = int(size.get_attribute("value"))
    body = browser.find_element("tag name", "body")
    for _ in range(8):
        body.send_keys("]")
    assert int(size.get_attribute("value")) > before + 8
    body.send_keys("e")
    assert "active" in browser.find_element("id", "tool-eraser").get_attribute("class")
    body.send_keys("b")
    assert "active" in browser.find_element("id", "tool-brush").get_attribute("class")

    set_colour(browser, RED)
    n = seq(browser)
    paint(browser, LEFT_STROKE)
    set_colour(browser, BLUE)
    paint(browser, RIGHT_STROKE)
    # A third stroke, undone with Ctrl+Z: it must be in neither the cues nor the result.
    set_colour(browser, GREEN)
    paint(browser, [(30, 20), (220, 20)])
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    wait(browser, lambda d: idle_with_result(d, n + 2), what="the result after the strokes")
    assert browser.find_element("id", "result").get_attribute("src") != first_src
    timings = browser.execute_script("return window.mangaPix2pix.timings")
    assert timings and all(t["strokeToRequestMs"] <= 300 for t in timings), timings

    if os.environ.get(SCREENSHOT):
        browser.save_screenshot(os.environ[SCREENSHOT])

    browser.find_element("id", "download-result").click()
    browser.find_element("id", "download-cues").click()
    result = decode_image(downloaded(browser.downloads, "drawing-colour.png"))
    cues = decode_image(downloaded(browser.downloads, "drawing-cues.png"), keep_alpha=True)
    assert result.shape == (HEIGHT, WIDTH, 3)
    assert cues.shape == (HEIGHT, WIDTH, 4)
    np.testing.assert_array_equal(result, shown_result(browser))

    # The cue layer holds the two strokes in their colours, and not the undone one.
    solid = cues[..., 3] == 255
    left, right = np.zeros_like(solid), np.zeros_like(solid)
    left[:, : WIDTH // 2 - 4], right[:, WIDTH // 2 + 4 :] = True, True
    assert (solid & left).sum() > 200 and (solid & right).sum() > 200
    assert distance(cues[solid & left][:, :3].mean(0), RED) < 3
    assert distance(cues[solid & right][:, :3].mean(0), BLUE) < 3
    assert not (cues[..., 3] > 0)[:28, 40:110].any()  # where the green stroke was

    # The colours follow the strokes: under each stroke, and over each half.
    paper = two_halves() > 200
    for mask, own, other in [(left, RED, BLUE), (right, BLUE, RED)]:
        stroked = result[solid & mask & paper].mean(0)
        region = result[mask & paper].mean(0)
        assert distance(stroked, own) < distance(stroked, other) - 60, (stroked, own)
        assert distance(region, own) < distance(region, other), (region, own)

    # `colorize --cues` with the downloaded cue layer gives the downloaded result exactly.
    cue_path, out = tmp_path / "cues.png", tmp_path / "colorized.png"
    cue_path.write_bytes((browser.downloads / "drawing-cues.png").read_bytes())
    run = CliRunner().invoke(main, ["colorize", str(sketch_path), "--cues", str(cue_path),
                                    "--model", str(stroke_run), "--work-size", str(WORK_SIZE),
                                    "-o", str(out)])
    assert run.exit_code == 0, run.output
    np.testing.assert_array_equal(decode_image(out.read_bytes()), result)

    # "No cues" colours the sketch alone: what `colorize --no-cues` gives.
    n = seq(browser)
    browser.find_element("id", "no-cues").click()
    wait(browser, lambda d: idle_with_result(d, n), what="the result without cues")
    run = CliRunner().invoke(main, ["colorize", str(sketch_path), "--no-cues", "--model",
                                    str(stroke_run), "--work-size", str(WORK_SIZE),
                                    "-o", str(out)])
    assert run.exit_code == 0, run.output
    no_cues = shown_result(browser)
    np.testing.assert_array_equal(no_cues, decode_image(out.read_bytes()))
    assert distance(no_cues[solid & left].mean(0), result[solid & left].mean(0)) > 30

    # Without cues the default background, auto, left the page around the figure white (the
    # default of `colorize` too); "Model's colours" is `--background model`.
    background = Select(browser.find_element("id", "background"))
    assert background.first_selected_option.get_attribute("value") == "auto"
    n = seq(browser)
    background.select_by_value("model")
    wait(browser, lambda d: idle_with_result(d, n), what="the result on the model's colours")
    run = CliRunner().invoke(main, ["colorize", str(sketch_path), "--no-cues", "--background",
                                    "model", "--model", str(stroke_run), "--work-size",
                                    str(WORK_SIZE), "-o", str(out)])
    assert run.exit_code == 0, run.output
    on_model = shown_result(browser)
    np.testing.assert_array_equal(on_model, decode_image(out.read_bytes()))
    assert (no_cues == 255).all(-1).sum() > (on_model == 255).all(-1).sum() + 500
    assert "model background" in browser.find_element("id", "result-size").text.lower()
    background.select_by_value("auto")

    # A narrow window shows one pane at a time, with a before/after switch.
    browser.set_window_size(640, 900)
    result_pane = browser.find_element("id", "result-pane")
    wait(browser, lambda d: not result_pane.is_displayed(), what="the narrow layout")
    browser.find_element("id", "show-result").click()
    assert result_pane.is_displayed()
    assert not browser.find_element("id", "sketch-pane").is_displayed()
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


DROP_OR_PASTE = """
const [kind, seed] = arguments;
const c = document.createElement('canvas');
c.width = 96 + seed * 16; c.height = 64;
const g = c.getContext('2d');
g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height);
g.lineWidth = 3; g.strokeStyle = '#000';
g.beginPath(); g.moveTo(c.width / 2, 0); g.lineTo(c.width / 2, 64); g.stroke();
c.toBlob((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], kind + '.png', {type: 'image/png'}));
  const event = kind === 'drop'
    ? new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})
    : new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});
  document.body.dispatchEvent(event);
}, 'image/png');
"""


def test_drop_paste_eyedropper_and_opacity(browser, live_server, served):
    server = live_server(served.app)
    browser.get(server.url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    for seed, kind in enumerate(["drop", "paste"]):
        n = seq(browser)
        browser.execute_script(DROP_OR_PASTE, kind, seed)
        wait(browser, lambda d, n=n: idle_with_result(d, n), what=f"the result of a {kind}")
        width = browser.execute_script("return document.getElementById('result').naturalWidth")
        assert width == 96 + seed * 16
        assert browser.find_element("id", "download-result").get_attribute("download") == (
            f"{kind}-colour.png")

    # The eyedropper takes the result's colour under the pointer.
    from selenium.webdriver.common.action_chains import ActionChains

    result = shown_result(browser)
    browser.find_element("tag name", "body").send_keys("i")
    image = browser.find_element("id", "result")
    rect = image.rect
    ActionChains(browser).move_to_element_with_offset(
        image, int(-rect["width"] / 4), 0).click().perform()
    picked = browser.find_element("id", "brush-color").get_attribute("value")
    height, width = result.shape[:2]
    x, y = width // 4, height // 2
    near = result[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3)
    picked_rgb = np.array([int(picked[i : i + 2], 16) for i in (1, 3, 5)])
    assert np.abs(near.astype(int) - picked_rgb).sum(1).min() <= 3, (picked, near)
    assert "active" in browser.find_element("id", "tool-brush").get_attribute("class")

    # The eraser takes paint off the cue layer where it passes.
    n = seq(browser)
    paint(browser, [(10, 32), (50, 32), (100, 32)], size=(64, 112))
    body = browser.find_element("tag name", "body")
    body.send_keys("e")
    paint(browser, [(56, 2), (56, 32), (56, 62)], size=(64, 112))
    wait(browser, lambda d: idle_with_result(d, n + 1), what="the result after erasing")
    alpha = browser.execute_script(
        "const c = document.getElementById('cue-canvas');"
        "const d = c.getContext('2d').getImageData(0, 32, c.width, 1).data;"
        "return Array.from({length: c.width}, (_, i) => d[4 * i + 3]);")
    assert alpha[20] == 255 and alpha[90] == 255 and alpha[56] == 0, alpha

    # The opacity slider changes only how the cue layer is shown.
    slider = browser.find_element("id", "cue-opacity")
    browser.execute_script(
        "arguments[0].value = 30; arguments[0].dispatchEvent(new Event('input'));", slider)
    opacity = browser.execute_script(
        "return getComputedStyle(document.getElementById('cue-canvas')).opacity")
    assert float(opacity) == pytest.approx(0.3)


def test_a_cue_free_model_colours_without_cues_and_offers_no_brush(
    browser, live_server, cue_free_model, tmp_path
):
    server = live_server(build_app(cue_free_model).app)
    sketch_path = tmp_path / "drawing.png"
    cv2.imwrite(str(sketch_path), two_halves())
    browser.get(server.url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    no_cues = browser.find_element("id", "no-cues")
    assert no_cues.is_selected() and not no_cues.is_enabled()
    assert not browser.find_element("id", "tool-brush").is_enabled()
    browser.find_element("id", "sketch-input").send_keys(str(sketch_path))
    wait(browser, lambda d: idle_with_result(d, 0), what="the result")
    assert shown_result(browser).shape == (HEIGHT, WIDTH, 3)
    assert browser.find_element("id", "message").text == ""


#: The error a `ControlledColorize` "refuse" answer gives.
REFUSAL = "sketch: refused for the test"


class ControlledColorize:
    """`app`, with chosen answers to its next `POST /api/colorize` requests: what the page does
    when the server refuses, stalls or goes away.

    `answers` holds what the next requests get, first come first served; once it is empty,
    `app` answers. `given` lists the answers given so far (for "cut" and "drop", once the
    headers and the start of the PNG are sent).

    - "refuse": 400 with the JSON error `REFUSAL`;
    - "stall": no answer until the page gives up on the request;
    - "cut": the headers and the start of a PNG, then nothing until the page gives up;
    - "drop": the headers and the start of a PNG, then the connection is closed.
    """

    def __init__(self, app):
        self.app = app
        self.answers: list[str] = []
        self.given: list[str] = []

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["path"] == "/api/colorize" and self.answers):
            await self.app(scope, receive, send)
            return
        answer = self.answers.pop(0)
        while (await receive()).get("more_body"):  # the form, left unread
            pass
        if answer == "refuse":
            await JSONResponse({"error": REFUSAL}, status_code=400)(scope, receive, send)
            self.given.append(answer)
            return
        if answer in ("cut", "drop"):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"image/png"), (b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b"\x89PNG\r\n\x1a\n",
                        "more_body": True})
        self.given.append(answer)
        if answer == "drop":
            await asyncio.sleep(0.5)  # the page is reading the body by then
            return  # the body unfinished: uvicorn closes the connection
        while (await receive())["type"] != "http.disconnect":  # "stall" and "cut"
            pass


def script_errors(driver) -> list:
    """The page's uncaught errors so far (not the network's: the browser logs each refused
    request, and these tests refuse some)."""
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and e["source"] == "javascript"]


def open_file(driver, folder, name: str, image: np.ndarray):
    """Opens `image`, written to `folder / name`, with the file input."""
    path = folder / name
    cv2.imwrite(str(path), image)
    driver.find_element("id", "sketch-input").send_keys(str(path))


def result_cleared(driver) -> bool:
    """No result shown, no size label and both downloads off."""
    return driver.execute_script(
        "const r = document.getElementById('result'), links = ['download-result', "
        "'download-cues'].map((id) => document.getElementById(id));"
        "return r.hidden && !r.getAttribute('src')"
        " && document.getElementById('result-size').textContent === ''"
        " && links.every((a) => a.classList.contains('disabled') && !a.hasAttribute('href'));"
    )


def page_state(driver, expression: str):
    return driver.execute_script(f"const s = window.mangaPix2pix; return {expression};")


def confirm_dialog(driver):
    """The page's `confirm()` dialog, or None while there is none."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


def open_controlled_page(browser, live_server, served) -> ControlledColorize:
    """The page, ready, on a live server whose colourings `ControlledColorize` answers."""
    controlled = ControlledColorize(served.app)
    browser.get(live_server(controlled).url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    return controlled


def test_opening_a_drawing_clears_the_last_ones_result(browser, live_server, served, tmp_path):
    controlled = open_controlled_page(browser, live_server, served)
    open_file(browser, tmp_path, "a.png", cv2.resize(two_halves(), (400, 300)))
    wait(browser, lambda d: idle_with_result(d, 0), what="a.png's result")
    assert browser.find_element("id", "result-size").text == "400 × 300"

    # An image under 2 px on a side is refused by the page, as by the server: a.png stays
    # open with its result.
    open_file(browser, tmp_path, "dot.png", np.zeros((1, 1), np.uint8))
    wait(browser, lambda d: "too small" in d.find_element("id", "message").text,
         what="the refusal of a 1 x 1 image")
    assert page_state(browser, "s.name") == "a.png"
    assert not result_cleared(browser)

    # A drawing the server refuses: a.png's result is gone, and its downloads with it.
    controlled.answers.append("refuse")
    open_file(browser, tmp_path, "b.png", two_halves())
    wait(browser, lambda d: d.find_element("id", "message").text == REFUSAL, what="the refusal")
    assert browser.find_element("id", "status").text == "ready"
    assert result_cleared(browser)

    # A drawing still being coloured shows no result either, until its own arrives.
    controlled.answers.append("stall")
    open_file(browser, tmp_path, "c.png", cv2.resize(two_halves(), (320, 240)))
    wait(browser, lambda d: controlled.given[-1:] == ["stall"], what="the stalled request")
    assert browser.find_element("id", "status").text == "colouring…"
    assert result_cleared(browser)
    n = seq(browser)
    paint(browser, [(100, 100), (140, 120)], size=(240, 320))
    wait(browser, lambda d: idle_with_result(d, n), what="c.png's result")
    assert browser.find_element("id", "result-size").text == "320 × 240"
    browser.find_element("id", "download-result").click()
    assert decode_image(downloaded(browser.downloads, "c-colour.png")).shape == (240, 320, 3)
    assert not script_errors(browser)


def test_a_connection_lost_while_the_result_arrives_is_reported(
    browser, live_server, served, tmp_path
):
    controlled = open_controlled_page(browser, live_server, served)
    controlled.answers.append("drop")
    open_file(browser, tmp_path, "drawing.png", two_halves())
    wait(browser, lambda d: "cannot reach the server" in d.find_element("id", "message").text,
         what="the lost connection reported")
    assert browser.find_element("id", "status").text == "ready"
    assert not script_errors(browser)

    # The next stroke is coloured as usual.
    n = seq(browser)
    paint(browser, LEFT_STROKE)
    wait(browser, lambda d: idle_with_result(d, n), what="the result after the stroke")
    assert browser.find_element("id", "message").text == ""


def test_a_newer_stroke_cancels_an_arriving_result_quietly(
    browser, live_server, served, tmp_path
):
    controlled = open_controlled_page(browser, live_server, served)
    controlled.answers.append("cut")
    open_file(browser, tmp_path, "drawing.png", two_halves())
    wait(browser, lambda d: controlled.given == ["cut"], what="the start of the result")
    time.sleep(0.5)  # for the page to take the headers and wait on the body
    n = seq(browser)
    paint(browser, LEFT_STROKE)
    wait(browser, lambda d: idle_with_result(d, n), what="the result after the stroke")
    assert browser.find_element("id", "message").text == ""
    assert not script_errors(browser)


def test_opening_another_drawing_asks_before_dropping_strokes(
    browser, live_server, served, tmp_path
):
    server = live_server(served.app)
    browser.get(server.url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    open_file(browser, tmp_path, "a.png", two_halves())
    wait(browser, lambda d: idle_with_result(d, 0), what="a.png's result")
    n = seq(browser)
    paint(browser, LEFT_STROKE)
    wait(browser, lambda d: idle_with_result(d, n), what="the result after the stroke")
    result_src = browser.find_element("id", "result").get_attribute("src")

    # Declined: a.png stays open with its stroke and its result.
    open_file(browser, tmp_path, "b.png", cv2.resize(two_halves(), (320, 240)))
    dialog = wait(browser, confirm_dialog, what="the confirm dialog")
    assert "b.png" in dialog.text and "a.png" in dialog.text
    dialog.dismiss()
    assert page_state(browser, "[s.name, s.ops.length]") == ["a.png", 1]
    assert browser.find_element("id", "result").get_attribute("src") == result_src
    assert browser.find_element("id", "undo").is_enabled()

    # Accepted: b.png opens, with no strokes to undo.
    n = seq(browser)
    browser.find_element("id", "sketch-input").send_keys(str(tmp_path / "b.png"))
    wait(browser, confirm_dialog, what="the confirm dialog").accept()
    wait(browser, lambda d: idle_with_result(d, n), what="b.png's result")
    assert page_state(browser, "[s.name, s.ops.length, s.redo.length]") == ["b.png", 0, 0]
    assert not browser.find_element("id", "undo").is_enabled()


def test_a_stroke_held_while_a_drawing_opens_stays_off_it(
    browser, live_server, served, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains

    server = live_server(served.app)
    browser.get(server.url)
    wait(browser, lambda d: d.find_element("id", "status").text == "ready", what="ready")
    open_file(browser, tmp_path, "drawing.png", two_halves())
    wait(browser, lambda d: idle_with_result(d, 0), what="the first result")
    canvas = browser.find_element("id", "cue-canvas")
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(20, 10).perform()
    n = seq(browser)
    browser.execute_script(DROP_OR_PASTE, "paste", 0)
    wait(browser, lambda d: idle_with_result(d, n), what="the pasted drawing's result")
    # The pointer goes on and comes up over the pasted drawing.
    n = seq(browser)
    ActionChains(browser).move_by_offset(5, 5).release().perform()
    assert page_state(browser, "[s.name, s.ops.length, s.seq]") == ["paste.png", 0, n]
    assert not browser.find_element("id", "undo").is_enabled()
    assert not browser.execute_script(
        "const c = document.getElementById('cue-canvas');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v);")
