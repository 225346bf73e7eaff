// manga-pix2pix serve: paint colour cues over a sketch; the server colours it after each stroke.
//
// The cue layer is a canvas at the sketch's full resolution. Strokes are kept as a list of
// operations (undo/redo replays them), and on every stroke end the layer is sent as a PNG with
// alpha, with the sketch file as it was opened, to POST /api/colorize. The newest request wins:
// an older one still in flight is aborted, and a late answer to it is dropped.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    input: $("sketch-input"),
    sketch: $("sketch"),
    stage: $("stage"),
    canvas: $("cue-canvas"),
    cursor: $("brush-cursor"),
    empty: $("empty"),
    result: $("result"),
    resultEmpty: $("result-empty"),
    resultSize: $("result-size"),
    working: $("working"),
    colour: $("brush-color"),
    hex: $("brush-hex"),
    recent: $("recent-colours"),
    size: $("brush-size"),
    sizeValue: $("brush-size-value"),
    opacity: $("cue-opacity"),
    opacityValue: $("cue-opacity-value"),
    undo: $("undo"),
    redo: $("redo"),
    clear: $("clear"),
    noCues: $("no-cues"),
    background: $("background"),
    noCuesHint: $("no-cues-hint"),
    status: $("status"),
    message: $("message"),
    modelInfo: $("model-info"),
    downloadResult: $("download-result"),
    downloadCues: $("download-cues"),
    views: $("views"),
    sketchFrame: $("sketch-frame"),
    resultFrame: $("result-frame"),
    dropOverlay: $("drop-overlay"),
  };
  const ctx = el.canvas.getContext("2d");
  const RECENT_KEY = "manga-pix2pix.recent-colours";
  const RECENT_MAX = 16;
  const DEFAULT_RECENT = ["#f6d5bf", "#5b3a29", "#e04a3a", "#f2c94c", "#3a6fe0", "#4caf50",
                          "#9b59b6", "#2b2b2b"];
  // The smallest a pane is shown, in CSS px: a 3000 x 10 drawing stays tall enough to paint on.
  const MIN_SHOWN_PX = 8;
  const UNREACHABLE = "cannot reach the server (is `manga-pix2pix serve` still running?)";

  const state = {
    model: null,
    sketchFile: null,
    name: "sketch",
    width: 0,
    height: 0,
    ops: [],            // {kind: "stroke", tool, colour, size, points: [[x, y], ...]} | {kind: "clear"}
    redo: [],
    stroke: null,
    tool: "brush",
    seq: 0,             // id of the newest colouring request
    controller: null,   // aborts the request in flight
    strokeEnd: null,    // performance.now() of the last stroke end not yet answered
    resultUrl: null,
    cuesUrl: null,
    timings: [],        // {seq, strokeToRequestMs, strokeToShownMs, requestToShownMs}
  };
  window.mangaPix2pix = state;  // for automation and benchmarks: timings, seq

  // --- status -----------------------------------------------------------------------------

  function setStatus(text, busy) {
    el.status.textContent = text;
    el.status.classList.toggle("busy", Boolean(busy));
    el.working.hidden = !busy;
  }

  function showMessage(text) {
    el.message.textContent = text || "";
  }

  // --- colours ----------------------------------------------------------------------------

  function normaliseHex(text) {
    const m = /^#?([0-9a-f]{6}|[0-9a-f]{3})$/i.exec(text.trim());
    if (!m) return null;
    let hex = m[1].toLowerCase();
    if (hex.length === 3) hex = hex.split("").map((c) => c + c).join("");
    return "#" + hex;
  }

  function setColour(hex) {
    el.colour.value = hex;
    el.hex.value = hex;
    el.hex.classList.remove("invalid");
  }

  function loadRecent() {
    try {
      const saved = JSON.parse(localStorage.getItem(RECENT_KEY));
      if (Array.isArray(saved) && saved.every((c) => normaliseHex(String(c)))) return saved;
    } catch (err) { /* unreadable storage: start from the defaults */ }
    return DEFAULT_RECENT.slice();
  }

  let recent = loadRecent();

  function renderRecent() {
    el.recent.replaceChildren(...recent.map((hex) => {
      const b = document.createElement("button");
      b.className = "swatch";
      b.style.background = hex;
      b.title = hex;
      b.setAttribute("aria-label", "Use " + hex);
      b.addEventListener("click", () => { setColour(hex); selectTool("brush"); });
      return b;
    }));
  }

  function remember(hex) {
    recent = [hex, ...recent.filter((c) => c !== hex)].slice(0, RECENT_MAX);
    try { localStorage.setItem(RECENT_KEY, JSON.stringify(recent)); } catch (err) { /* private mode */ }
    renderRecent();
  }

  el.colour.addEventListener("input", () => setColour(el.colour.value));
  el.hex.addEventListener("input", () => {
    const hex = normaliseHex(el.hex.value);
    el.hex.classList.toggle("invalid", hex === null);
    if (hex) el.colour.value = hex;
  });
  el.hex.addEventListener("change", () => {
    const hex = normaliseHex(el.hex.value);
    if (hex) setColour(hex);
  });
  el.hex.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === "Escape") el.hex.blur();
  });

  // --- tools ------------------------------------------------------------------------------

  function selectTool(tool) {
    if (state.model && !state.model.uses_cues && tool !== "picker") tool = "picker";
    state.tool = tool;
    for (const b of document.querySelectorAll(".tool")) {
      const on = b.dataset.tool === tool;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", String(on));
    }
    document.body.classList.toggle("picking", tool === "picker");
    el.cursor.classList.toggle("eraser", tool === "eraser");
  }

  for (const b of document.querySelectorAll(".tool")) {
    b.addEventListener("click", () => selectTool(b.dataset.tool));
  }

  function setSize(value) {
    const v = Math.max(Number(el.size.min), Math.min(Number(el.size.max), Math.round(value)));
    el.size.value = String(v);
    el.sizeValue.textContent = String(v);
    updateCursorSize();
  }

  el.size.addEventListener("input", () => setSize(Number(el.size.value)));
  el.opacity.addEventListener("input", () => {
    el.opacityValue.textContent = el.opacity.value;
    el.canvas.style.opacity = String(Number(el.opacity.value) / 100);
  });
  el.noCues.addEventListener("change", () => colorize());
  el.background.addEventListener("change", () => colorize());

  // --- the cue layer ----------------------------------------------------------------------

  function drawDab(op, p) {
    ctx.beginPath();
    ctx.arc(p[0], p[1], op.size / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function drawSegment(op, a, b) {
    ctx.beginPath();
    ctx.moveTo(a[0], a[1]);
    ctx.lineTo(b[0], b[1]);
    ctx.stroke();
  }

  function prepare(op) {
    ctx.globalCompositeOperation = op.tool === "eraser" ? "destination-out" : "source-over";
    ctx.strokeStyle = op.colour;
    ctx.fillStyle = op.colour;
    ctx.lineWidth = op.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function replay() {
    ctx.globalCompositeOperation = "source-over";
    ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    for (const op of state.ops) {
      if (op.kind === "clear") {
        ctx.globalCompositeOperation = "source-over";
        ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
        continue;
      }
      prepare(op);
      drawDab(op, op.points[0]);
      for (let i = 1; i < op.points.length; i++) drawSegment(op, op.points[i - 1], op.points[i]);
    }
    ctx.globalCompositeOperation = "source-over";
  }

  function updateHistoryButtons() {
    el.undo.disabled = state.ops.length === 0;
    el.redo.disabled = state.redo.length === 0;
    el.clear.disabled = !state.sketchFile;
  }

  function commit(op) {
    state.ops.push(op);
    state.redo = [];
    updateHistoryButtons();
    strokeEnded();
  }

  function undo() {
    if (!state.ops.length) return;
    state.redo.push(state.ops.pop());
    replay();
    updateHistoryButtons();
    strokeEnded();
  }

  function redo() {
    if (!state.redo.length) return;
    state.ops.push(state.redo.pop());
    replay();
    updateHistoryButtons();
    strokeEnded();
  }

  function clearLayer() {
    if (!state.sketchFile) return;
    ctx.clearRect(0, 0, el.canvas.width, el.canvas.height);
    commit({ kind: "clear" });
  }

  el.undo.addEventListener("click", undo);
  el.redo.addEventListener("click", redo);
  el.clear.addEventListener("click", clearLayer);

  function imagePoint(event) {
    const rect = el.canvas.getBoundingClientRect();
    return [
      (event.clientX - rect.left) * (el.canvas.width / rect.width),
      (event.clientY - rect.top) * (el.canvas.height / rect.height),
    ];
  }

  function updateCursorSize() {
    if (!state.width) return;
    const scale = el.canvas.getBoundingClientRect().width / state.width;
    const d = Math.max(4, Number(el.size.value) * scale);
    el.cursor.style.width = d + "px";
    el.cursor.style.height = d + "px";
  }

  function moveCursor(event) {
    const rect = el.stage.getBoundingClientRect();
    el.cursor.style.left = event.clientX - rect.left + "px";
    el.cursor.style.top = event.clientY - rect.top + "px";
  }

  el.canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !state.sketchFile) return;
    event.preventDefault();
    // Painting takes the keyboard back from the hex field, so that B, E, [ and ] work.
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
    if (state.tool === "picker") {
      pick(imagePoint(event));
      return;
    }
    el.canvas.setPointerCapture(event.pointerId);
    const op = {
      kind: "stroke",
      tool: state.tool,
      colour: el.colour.value,
      size: Number(el.size.value),
      points: [imagePoint(event)],
    };
    state.stroke = op;
    prepare(op);
    drawDab(op, op.points[0]);
  });

  el.canvas.addEventListener("pointermove", (event) => {
    moveCursor(event);
    const op = state.stroke;
    if (!op) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    prepare(op);
    for (const e of events.length ? events : [event]) {
      const p = imagePoint(e);
      drawSegment(op, op.points[op.points.length - 1], p);
      op.points.push(p);
    }
  });

  function endStroke() {
    const op = state.stroke;
    if (!op) return;
    state.stroke = null;
    ctx.globalCompositeOperation = "source-over";
    if (op.tool === "brush") remember(op.colour);
    commit(op);
  }

  el.canvas.addEventListener("pointerup", endStroke);
  el.canvas.addEventListener("pointercancel", endStroke);
  el.canvas.addEventListener("pointerenter", () => { el.cursor.hidden = state.tool === "picker"; });
  el.canvas.addEventListener("pointerleave", () => { el.cursor.hidden = true; });

  // --- the eyedropper: a colour from the result --------------------------------------------

  function pick(point) {
    if (el.result.hidden || !el.result.naturalWidth) {
      showMessage("no result to take a colour from yet");
      return;
    }
    const c = document.createElement("canvas");
    c.width = 1;
    c.height = 1;
    const x = Math.floor(point[0] * el.result.naturalWidth / state.width);
    const y = Math.floor(point[1] * el.result.naturalHeight / state.height);
    const g = c.getContext("2d");
    g.drawImage(el.result, x, y, 1, 1, 0, 0, 1, 1);
    const [r, gr, b] = g.getImageData(0, 0, 1, 1).data;
    setColour("#" + [r, gr, b].map((v) => v.toString(16).padStart(2, "0")).join(""));
    selectTool("brush");
  }

  el.result.addEventListener("pointerdown", (event) => {
    if (state.tool !== "picker") return;
    const rect = el.result.getBoundingClientRect();
    pick([
      (event.clientX - rect.left) * (state.width / rect.width),
      (event.clientY - rect.top) * (state.height / rect.height),
    ]);
  });

  // --- colouring requests -----------------------------------------------------------------

  function strokeEnded() {
    state.strokeEnd = performance.now();
    colorize();
  }

  function cueBlob() {
    // Encoded at once: Chromium runs canvas.toBlob in idle time, which a busy machine may not
    // give it for seconds.
    const url = el.canvas.toDataURL("image/png");
    const bytes = atob(url.slice(url.indexOf(",") + 1));
    const data = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) data[i] = bytes.charCodeAt(i);
    return new Blob([data], { type: "image/png" });
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
    } catch (err) { /* not JSON */ }
    return "the server answered " + response.status;
  }

  async function colorize() {
    if (!state.sketchFile || !state.model) return;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const seq = ++state.seq;
    const strokeEnd = state.strokeEnd;
    setStatus("colouring…", true);
    const cues = cueBlob();
    const noCues = el.noCues.checked;
    const background = el.background.value;
    const form = new FormData();
    form.append("sketch", state.sketchFile, state.name);
    form.append("background", background);
    if (noCues) {
      form.append("no_cues", "1");
    } else if (state.model.uses_cues) {
      form.append("cues", cues, "cues.png");
    }
    // The cap covers the whole body: a request over it would only be refused.
    const max = state.model.max_upload_bytes;
    if (state.sketchFile.size + (form.has("cues") ? cues.size : 0) + formBytes(state.name) > max) {
      finish(seq, `the sketch and its cue layer together are over the server's upload limit of `
        + `${megabytes(max)} MB (serve --max-upload-mb)`);
      return;
    }
    const requestStart = performance.now();
    let png;
    try {
      const response = await fetch("/api/colorize", { method: "POST", body: form, signal: controller.signal });
      if (seq !== state.seq) return;
      if (!response.ok) {
        finish(seq, await errorText(response));
        return;
      }
      // The body can fail as the headers could: the connection drops, or a newer request
      // aborts this one, while it arrives.
      png = await response.blob();
    } catch (err) {
      if (seq !== state.seq) return;  // aborted by a newer request
      finish(seq, UNREACHABLE);
      return;
    }
    if (seq !== state.seq) return;
    const url = URL.createObjectURL(png);
    // The first load or error after this src is set answers this request; a newer request's
    // src makes it stale, and its listeners then only clean up.
    const listening = new AbortController();
    el.result.addEventListener("error", () => {
      listening.abort();
      URL.revokeObjectURL(url);
      finish(seq, "the browser cannot show the result");
    }, { signal: listening.signal });
    el.result.addEventListener("load", () => {
      listening.abort();
      if (seq !== state.seq) {
        URL.revokeObjectURL(url);
        return;
      }
      const shown = performance.now();
      if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
      if (state.cuesUrl) URL.revokeObjectURL(state.cuesUrl);
      state.resultUrl = url;
      state.cuesUrl = URL.createObjectURL(cues);
      el.downloadResult.href = state.resultUrl;
      el.downloadCues.href = state.cuesUrl;
      el.downloadResult.classList.remove("disabled");
      el.downloadCues.classList.remove("disabled");
      el.result.hidden = false;
      el.resultEmpty.hidden = true;
      el.resultSize.textContent = el.result.naturalWidth + " × " + el.result.naturalHeight
        + (noCues ? " · no cues" : "")
        + (background === "auto" ? "" : " · " + background + " background");
      fit();
      if (strokeEnd !== null) {
        state.timings.push({
          seq,
          strokeToRequestMs: requestStart - strokeEnd,
          strokeToShownMs: shown - strokeEnd,
          requestToShownMs: shown - requestStart,
        });
      }
      if (state.strokeEnd === strokeEnd) state.strokeEnd = null;
      el.result.dataset.seq = String(seq);
      finish(seq, null);
    }, { signal: listening.signal });
    el.result.src = url;
  }

  function finish(seq, error) {
    if (seq !== state.seq) return;
    state.controller = null;
    showMessage(error);
    setStatus("ready", false);
  }

  // --- opening a sketch -------------------------------------------------------------------

  function baseName(name) {
    return (name || "sketch").replace(/\.[^.]*$/, "") || "sketch";
  }

  // The form's own bytes around the files: boundaries, part headers, the small fields and the
  // sketch's name (at most 3 bytes a character, encoded).
  const formBytes = (name) => 1024 + 3 * name.length;
  const megabytes = (bytes) => String(Number((bytes / 1048576).toFixed(2)));

  // What opening another drawing would lose: strokes to undo or to redo.
  const hasStrokes = () => state.ops.length > 0 || state.redo.length > 0;

  // Back to no result, as before the first: what is shown and downloaded belongs to the
  // drawing it was coloured from.
  function clearResult() {
    el.result.hidden = true;
    el.result.removeAttribute("src");
    delete el.result.dataset.seq;
    el.resultEmpty.hidden = false;
    el.resultSize.textContent = "";
    for (const link of [el.downloadResult, el.downloadCues]) {
      link.removeAttribute("href");
      link.classList.add("disabled");
    }
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    if (state.cuesUrl) URL.revokeObjectURL(state.cuesUrl);
    state.resultUrl = null;
    state.cuesUrl = null;
  }

  function openSketch(file) {
    if (!file) return;
    showMessage(null);
    if (!/^image\//.test(file.type || "image/")) {
      showMessage(file.name + ": not an image");
      return;
    }
    const name = file.name || "sketch.png";
    if (state.model && file.size + formBytes(name) > state.model.max_upload_bytes) {
      showMessage(file.name + ": over the server's upload limit of "
        + megabytes(state.model.max_upload_bytes) + " MB");
      return;
    }
    const url = URL.createObjectURL(file);
    const probe = new Image();
    probe.onload = () => {
      const w = probe.naturalWidth;
      const h = probe.naturalHeight;
      let refusal = null;
      if (w < 2 || h < 2) {
        refusal = `the image is too small (${w}×${h})`;  // as the server would answer
      } else if (state.model && w * h > state.model.max_pixels) {
        refusal = `${w}×${h} is over the server's limit of ${state.model.max_pixels} pixels`;
      }
      if (refusal) {
        showMessage(`${file.name}: ${refusal}`);
        URL.revokeObjectURL(url);
        return;
      }
      if (hasStrokes() && !confirm(`Open ${name}? The strokes painted on ${state.name} will be `
          + "lost: download its cue layer first to keep them.")) {
        URL.revokeObjectURL(url);
        return;
      }
      if (el.sketch.src) URL.revokeObjectURL(el.sketch.src);
      el.sketch.src = url;
      state.sketchFile = file;
      state.name = name;
      state.width = w;
      state.height = h;
      state.ops = [];
      state.redo = [];
      state.stroke = null;  // one held down now was begun on the other drawing
      state.strokeEnd = null;
      clearResult();
      el.canvas.width = w;
      el.canvas.height = h;
      const base = baseName(state.name);
      el.downloadResult.download = base + "-colour.png";
      el.downloadCues.download = base + "-cues.png";
      el.stage.hidden = false;
      el.empty.hidden = true;
      setSize(Math.max(4, Math.round(Math.min(w, h) / 40)));
      updateHistoryButtons();
      fit();
      colorize();
    };
    probe.onerror = () => {
      URL.revokeObjectURL(url);
      showMessage((file.name || "the file") + ": the browser cannot read this image");
    };
    probe.src = url;
  }

  el.input.addEventListener("change", () => {
    openSketch(el.input.files[0]);
    el.input.value = "";
  });

  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth++;
    el.dropOverlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.dropOverlay.hidden = true;
  });
  window.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    el.dropOverlay.hidden = true;
    openSketch(event.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData?.items || []).find((i) => i.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    const file = item.getAsFile();
    openSketch(new File([file], file.name || "pasted.png", { type: file.type }));
  });

  // --- layout: both panes fitted to their frames, at the sketch's aspect ratio -------------

  function fitInto(frame, node) {
    const style = getComputedStyle(frame);
    const padX = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const padY = parseFloat(style.paddingTop) + parseFloat(style.paddingBottom);
    const scale = Math.min((frame.clientWidth - padX) / state.width,
                           (frame.clientHeight - padY) / state.height);
    if (!(scale > 0)) return;
    node.style.width = Math.max(MIN_SHOWN_PX, Math.floor(state.width * scale)) + "px";
    node.style.height = Math.max(MIN_SHOWN_PX, Math.floor(state.height * scale)) + "px";
  }

  function fit() {
    if (!state.width) return;
    fitInto(el.sketchFrame, el.stage);
    const frame = el.resultFrame.clientWidth ? el.resultFrame : el.sketchFrame;
    fitInto(frame, el.result);
    updateCursorSize();
  }

  new ResizeObserver(fit).observe(el.views);

  $("show-sketch").addEventListener("click", () => showView(false));
  $("show-result").addEventListener("click", () => showView(true));

  function showView(result) {
    el.views.classList.toggle("show-result", result);
    $("show-result").classList.toggle("active", result);
    $("show-sketch").classList.toggle("active", !result);
    fit();
  }

  // --- keyboard ---------------------------------------------------------------------------

  window.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type === "text") return;
    const key = event.key.toLowerCase();
    const mod = event.ctrlKey || event.metaKey;
    if (mod && key === "z") {
      event.preventDefault();
      if (event.shiftKey) redo(); else undo();
    } else if (mod && key === "y") {
      event.preventDefault();
      redo();
    } else if (mod || event.altKey) {
      return;
    } else if (key === "b") {
      selectTool("brush");
    } else if (key === "e") {
      selectTool("eraser");
    } else if (key === "i") {
      selectTool("picker");
    } else if (event.key === "[" || event.key === "]") {
      const v = Number(el.size.value);
      const step = Math.max(1, Math.round(v * 0.15));
      setSize(event.key === "[" ? v - step : v + step);
    }
  });

  // --- start ------------------------------------------------------------------------------

  async function start() {
    renderRecent();
    try {
      const response = await fetch("/api/model");
      if (!response.ok) throw new Error(await errorText(response));
      state.model = await response.json();
    } catch (err) {
      setStatus("offline", false);
      showMessage("cannot load the model's facts: " + err.message);
      return;
    }
    const m = state.model;
    el.background.value = m.background;
    el.modelInfo.textContent = `${m.name} · ${m.preset || "custom"} · ${m.image_size} px`
      + ` · work size ${m.work_size}` + (m.uses_cues ? "" : " · no-cues model");
    if (!m.uses_cues) {
      el.noCues.checked = true;
      el.noCues.disabled = true;
      el.noCuesHint.textContent = "This model was trained without cues: it colours the sketch alone.";
      for (const id of ["tool-brush", "tool-eraser"]) $(id).disabled = true;
      selectTool("picker");
    }
    setStatus("ready", false);
    if (state.sketchFile) colorize();
  }

  start();
})();
