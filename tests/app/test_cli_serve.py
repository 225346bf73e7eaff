"""The `serve` command: help, a real process that prints its URL and stops cleanly on Ctrl-C,
and one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from manga_pix2pix.app.server import is_loopback, network_warning
from manga_pix2pix.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_help_has_the_options_and_an_example():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--host", "--port", "--work-size", "--max-upload-mb", "--open"):
        assert option in result.output
    assert "Example:" in result.output


@pytest.mark.slow
def test_a_process_prints_its_url_serves_and_stops_cleanly_on_ctrl_c(stroke_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "manga_pix2pix.cli", "serve", "--model", str(stroke_run),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("serving on "):
                break
        assert lines and lines[-1].startswith("serving on http://127.0.0.1:"), lines
        url = lines[-1].split()[2]
        assert "smoke" in lines[0] and "with cues" in lines[0]
        with urllib.request.urlopen(url + "healthz", timeout=30) as response:
            assert response.read() == b'{"status":"ok"}'
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err and "Warning" not in err


def test_a_port_in_use_is_one_line(stroke_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--model", str(stroke_run),
                                           "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output and "--port" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("model", ["missing-model", "not-a-model.txt"])
def test_a_bad_model_is_one_line(tmp_path, model):
    path = tmp_path / model
    if model.endswith(".txt"):
        path.write_text("hello")
    result = CliRunner().invoke(main, ["serve", "--model", str(path), "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def test_only_loopback_addresses_are_quiet():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host) and network_warning(host) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host)
        assert "anyone" in network_warning(host), host


def test_binding_beyond_loopback_prints_the_warning(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "missing"),
                                       "--host", "0.0.0.0", "--port", "0"])
    assert "Warning: serving on 0.0.0.0: anyone" in result.output
    assert result.exit_code == 1 and "no such model" in result.output
