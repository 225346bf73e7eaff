"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform


def _cpuinfo_fields(*names: str) -> dict[str, str]:
    """The first value of each of `names` in /proc/cpuinfo (none where it is unreadable)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in names and key not in found:
                    found[key] = value.strip()
    except OSError:
        pass
    return found


def machine(**extra) -> dict:
    """The CPU (name, family, model, counts), load, GPUs, versions, the date; plus `extra`."""
    import tensorflow as tf

    fields = _cpuinfo_fields("model name", "cpu family", "model")
    info = {
        "cpu": fields.get("model name", platform.processor()),
        # A name such as "AMD EPYC" covers generations that differ 2 x in speed.
        "cpu_family": fields.get("cpu family"),
        "cpu_model_number": fields.get("model"),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # Other processes on the same cores slow every rate; the ratios are the robust figures.
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
