"""Choosing a `tf.distribute` strategy and the mixed-precision policy.

One train step runs unchanged under every strategy here:

* `default`: one device (the CPU, or the single GPU).
* `mirrored`: synchronous data parallelism over all local GPUs (`MirroredStrategy`).
* `multi-worker`: synchronous data parallelism over several machines, each described by the
  `TF_CONFIG` environment variable (`MultiWorkerMirroredStrategy`); only the chief writes the
  run directory.
* `tpu`: a Cloud TPU (`TPUClusterResolver` + `TPUStrategy`), named by `--tpu`.
* `auto`: `tpu` when a TPU is named, `mirrored` when there is more than one GPU, else `default`.

And the precision `auto`: `mixed_bfloat16` where the hardware computes in bfloat16 (TPUs,
NVIDIA GPUs of compute capability 8.0 or more, CPUs with AMX or AVX512-BF16 units), else
`float32`. Elsewhere bfloat16 would be emulated, and slower than float32.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from urllib.parse import urlsplit

import keras
import tensorflow as tf

from manga_pix2pix.errors import UserError

log = logging.getLogger(__name__)


def resolve_strategy_name(name: str, tpu: str | None = None) -> str:
    """The concrete strategy `auto` stands for on this machine (other names are returned as is)."""
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """Creates the distribution strategy for a run.

    Must be called before any other TensorFlow work in the process when `name` is
    `multi-worker` or `tpu` (both set up the runtime's cluster).

    Args:
        name: `auto`, `default`, `mirrored`, `multi-worker` or `tpu`.
        tpu: TPU name or `grpc://` address (for `tpu`; `auto` picks `tpu` when given).

    Returns:
        The strategy.

    Raises:
        UserError: `multi-worker` without a usable `TF_CONFIG`, or a TPU that cannot be reached.
    """
    name = resolve_strategy_name(name, tpu)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        _check_tpu_address(tpu)
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, OSError, tf.errors.OpError) as err:
            # OSError: a TPU name is looked up on the cloud's metadata server.
            reason = " ".join(str(err).split()) or type(err).__name__
            raise UserError(f"cannot reach the TPU {tpu or '(default)'}: {reason}") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown strategy {name!r}")


#: Seconds to wait for a `grpc://` TPU address to accept a connection.
TPU_CONNECT_TIMEOUT = 10.0


def _check_tpu_address(tpu: str | None) -> None:
    """Fails fast on a `grpc://host:port` TPU that does not answer.

    TensorFlow would otherwise wait for it indefinitely.
    """
    if not tpu or not tpu.startswith("grpc://"):
        return
    parts = urlsplit(tpu)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UserError(f"--tpu {tpu}: expected grpc://HOST:PORT")
    try:
        with socket.create_connection((parts.hostname, port), timeout=TPU_CONNECT_TIMEOUT):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"cannot reach the TPU {tpu}: {reason}") from None


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "the multi-worker strategy needs TF_CONFIG describing the cluster and this task, "
            'e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        spec = json.loads(raw)
        workers = spec["cluster"]["worker"]
        task = spec["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise UserError(
            "TF_CONFIG: not valid JSON with cluster.worker and task.type/index"
        ) from None
    if not workers or not isinstance(workers, list):
        raise UserError("TF_CONFIG: cluster.worker lists no workers")
    if not all(isinstance(w, str) and w.rpartition(":")[2].isdigit() for w in workers):
        raise UserError(f"TF_CONFIG: cluster.worker must list HOST:PORT addresses, got {workers}")
    kinds = {"worker": len(workers), "chief": len(spec["cluster"].get("chief", []) or [])}
    if task["type"] not in kinds:
        raise UserError(f"TF_CONFIG: task.type must be worker or chief, got {task['type']!r}")
    index = int(task["index"])
    if not 0 <= index < kinds[task["type"]]:
        raise UserError(f"TF_CONFIG: task.index {index} is not one of the "
                        f"{kinds[task['type']]} {task['type']} addresses (counted from 0)")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (only the chief does under multi-worker)."""
    return bool(strategy.extended.should_checkpoint)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The `--strategy` name of a strategy object."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def device_description(strategy: tf.distribute.Strategy) -> str:
    """Where the step runs, e.g. `NVIDIA H100, 2 replicas (mirrored)`."""
    replicas = strategy.num_replicas_in_sync
    gpus = tf.config.list_physical_devices("GPU")
    if isinstance(strategy, tf.distribute.TPUStrategy):
        device = "TPU"
    elif gpus:
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
        device = f"CPU ({os.cpu_count()} cores)"
    plural = "s" if replicas > 1 else ""
    return f"{device}, {replicas} replica{plural} ({strategy_name(strategy)} strategy)"


#: The CPU flags (as in /proc/cpuinfo) of units that compute in bfloat16.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: The first NVIDIA compute capability with bfloat16 tensor cores (Ampere).
GPU_BF16_CAPABILITY = (8, 0)


def cpu_fields(*names: str, cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first CPU's value of each of `names` in `cpuinfo` (none where there is no such file).

    Example: `cpu_fields("model name", "cpu family")` -> `{"model name": "AMD EPYC",
    "cpu family": "26"}`.
    """
    found: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in names and key not in found:
                    found[key] = value.strip()
                    if len(found) == len(names):
                        break
    except OSError:
        pass
    return found


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags, as Linux lists them (empty where there is no such file)."""
    return set(cpu_fields("flags", cpuinfo=cpuinfo).get("flags", "").split())


def resolve_precision(
    precision: str, strategy: tf.distribute.Strategy, cpuinfo: str = "/proc/cpuinfo"
) -> tuple[str, str]:
    """The precision `auto` stands for where `strategy` runs, and why.

    Args:
        precision: `auto`, or a concrete precision (returned as is).
        strategy: the strategy the step will run under.
        cpuinfo: where the CPU's flags are read from (for a CPU strategy).

    Returns:
        `(precision, reason)`, e.g. `("mixed_bfloat16", "auto: the CPU has amx_bf16")`.
    """
    if precision != "auto":
        return precision, "as asked"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16", "auto: TPUs compute in bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability")
                  or (0, 0))
            for gpu in gpus
        ]
        lowest = min(capabilities)
        shown = ".".join(str(v) for v in lowest)
        if lowest >= GPU_BF16_CAPABILITY:
            return "mixed_bfloat16", f"auto: GPU compute capability {shown} has bfloat16"
        return "float32", f"auto: GPU compute capability {shown} lacks bfloat16"
    found = sorted(cpu_flags(cpuinfo).intersection(CPU_BF16_FLAGS))
    if found:
        return "mixed_bfloat16", f"auto: the CPU has {' and '.join(found)}"
    return "float32", "auto: the CPU has no bfloat16 units (AMX, AVX512-BF16)"


def resolve_derive_on(derive_on: str, strategy: tf.distribute.Strategy) -> str:
    """Where `auto` derives the examples: on the device, with an accelerator or without.

    With a GPU or TPU the host then only decodes, which keeps the accelerator fed. On a CPU
    it is the faster of the two as well: the `small` preset trained 1.09-1.12 x faster with
    the derivation in the step than in a parallel input pipeline competing with the step for
    the same cores (docs/benchmarks.md).
    """
    del strategy  # the same answer under every strategy, measured so far
    return "device" if derive_on == "auto" else derive_on


class precision_policy:
    """Context manager: sets the Keras dtype policy for the models built inside it.

    `float32`, `mixed_float16` (compute in float16, variables in float32; needs loss scaling)
    or `mixed_bfloat16`. The previous global policy is restored on exit.
    """

    def __init__(self, precision: str):
        self.precision = precision
        self._saved = None

    def __enter__(self):
        self._saved = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.precision)
        return self

    def __exit__(self, *exc):
        keras.mixed_precision.set_global_policy(self._saved)
        return False
