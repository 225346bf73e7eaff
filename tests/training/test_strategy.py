"""Choosing the strategy: what `auto` means here, and a TPU that is not there."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from manga_pix2pix.errors import UserError
from manga_pix2pix.training.strategy import make_strategy, resolve_strategy_name


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_auto_is_tpu_when_one_is_named_else_default_on_a_cpu():
    assert resolve_strategy_name("auto", tpu="grpc://10.0.0.2:8470") == "tpu"
    assert resolve_strategy_name("auto") == "default"
    assert resolve_strategy_name("mirrored") == "mirrored"


def test_an_unreachable_tpu_address_fails_at_once():
    address = f"grpc://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(UserError, match=f"cannot reach the TPU {address}"):
        make_strategy("tpu", tpu=address)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("address", ["grpc://nohost", "grpc://:8470", "grpc://host:port"])
def test_a_malformed_tpu_address_is_refused(address):
    with pytest.raises(UserError, match="expected grpc://HOST:PORT"):
        make_strategy("tpu", tpu=address)


def test_train_with_an_unreachable_tpu_is_one_line_and_leaves_nothing(tmp_path):
    address = f"grpc://127.0.0.1:{_closed_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "manga_pix2pix", "train", "--preset", "smoke", "--steps", "1",
         "--tpu", address, "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot reach the TPU {address}: Connection refused"
    ]
    assert not (tmp_path / "run").exists()
