"""Two real worker processes on 127.0.0.1 train with MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import manga_pix2pix.models  # noqa: F401  (registers the generator for loading)

WORKER = """
import sys
import numpy as np
from manga_pix2pix.config import preset
from manga_pix2pix.training import Trainer

config = preset("smoke")
config.data.synthetic_count = 8
config.train.steps = 3
config.train.strategy = "multi-worker"
config.train.ema_decay = 0.5
trainer = Trainer(config, sys.argv[1], quiet=True)
summary = trainer.run()
variables = trainer.generator.variables + trainer.discriminator.variables + trainer.ema
np.savez(sys.argv[2], *[v.numpy() for v in variables])
print(summary["device"], summary["steps"], "wrote" if summary["wrote_run_dir"] else "helped")
"""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_to_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    run = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(run), str(tmp_path / f"worker{index}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            proc.kill()
    for proc, output, role in zip(procs, outputs, ("wrote", "helped"), strict=True):
        assert proc.returncode == 0, output[-3000:]
        assert f"2 replicas (multi-worker strategy) 3 {role}" in output
    chief, other = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    assert len(chief.files) == len(other.files) > 40
    for key in chief.files:  # weights, batch-norm statistics, RNG states, weight average
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    # Only the chief wrote the run directory, and it is complete.
    for name in ("config.json", "generator.keras", "train_summary.json", "checkpoints"):
        assert (run / name).exists(), name
    assert json.loads((run / "train_summary.json").read_text())["strategy"] == "multi-worker"
    # The saved generator holds the weight average (the last arrays of the file).
    saved = keras.saving.load_model(run / "generator.keras", compile=False)
    order = sorted(chief.files, key=lambda key: int(key.removeprefix("arr_")))
    averages = [chief[key] for key in order[-len(saved.trainable_variables):]]
    for weight, average in zip(saved.trainable_variables, averages, strict=True):
        np.testing.assert_allclose(weight.numpy(), average, atol=1e-7)
