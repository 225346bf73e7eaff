"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform


def machine(**extra) -> dict:
    """CPU model and counts, load, GPUs, TensorFlow and Python versions, the date; plus `extra`."""
    import tensorflow as tf

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": model,
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
