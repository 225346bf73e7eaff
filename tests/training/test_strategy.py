"""Choosing the strategy and the precision: what `auto` means here, and a TPU that is not there."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from manga_pix2pix.errors import UserError
from manga_pix2pix.training.strategy import (
    CPU_BF16_FLAGS,
    cpu_fields,
    cpu_flags,
    make_strategy,
    resolve_precision,
    resolve_strategy_name,
)


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


def _cpuinfo(tmp_path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\n")
    return str(path)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("avx2 fma", "float32"),
        ("avx2 avx512f avx512_bf16", "mixed_bfloat16"),
        ("avx2 amx_tile amx_bf16 amx_int8", "mixed_bfloat16"),
        # AVX-512 without its bfloat16 extension still emulates bfloat16.
        ("avx2 avx512f avx512bw avx512_vnni", "float32"),
    ],
)
def test_auto_precision_follows_the_cpus_bfloat16_units(tmp_path, flags, expected):
    strategy = tf.distribute.get_strategy()
    precision, reason = resolve_precision("auto", strategy, cpuinfo=_cpuinfo(tmp_path, flags))
    assert precision == expected
    assert reason.startswith("auto:")
    for flag in CPU_BF16_FLAGS:
        assert (flag in reason) == (flag in flags.split())


def test_auto_precision_on_this_machine_matches_its_cpu_flags():
    precision, _ = resolve_precision("auto", tf.distribute.get_strategy())
    has_units = bool(cpu_flags().intersection(CPU_BF16_FLAGS))
    assert precision == ("mixed_bfloat16" if has_units else "float32")


def test_cpu_fields_are_the_first_cpus_and_model_is_not_model_name(tmp_path):
    path = tmp_path / "cpuinfo"
    cpu = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: 2\n" \
          "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n"
    path.write_text(cpu.format(n=0, family=26) + cpu.format(n=1, family=25))
    fields = cpu_fields("model name", "cpu family", "model", "stepping", cpuinfo=str(path))
    assert fields == {"model name": "AMD EPYC", "cpu family": "26", "model": "2"}
    assert cpu_flags(str(path)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_fields("model", cpuinfo=str(tmp_path / "none")) == {}
    assert cpu_flags(str(tmp_path / "none")) == set()


def test_a_concrete_precision_is_kept_and_a_missing_cpuinfo_means_float32(tmp_path):
    strategy = tf.distribute.get_strategy()
    assert resolve_precision("mixed_float16", strategy) == ("mixed_float16", "as asked")
    assert resolve_precision("auto", strategy, cpuinfo=str(tmp_path / "none"))[0] == "float32"


@pytest.mark.parametrize(("tf_config", "message"), [
    ("{bad", "not valid JSON"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "no workers"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
     "HOST:PORT"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 7}}',
     "task.index 7 is not one of the 1 worker addresses"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "ps", "index": 0}}',
     "task.type must be worker or chief"),
])
def test_a_bad_tf_config_is_one_line_before_tensorflow_sees_it(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=message) as err:
        make_strategy("multi-worker")
    assert "\n" not in str(err.value) and str(err.value).startswith("TF_CONFIG: ")
