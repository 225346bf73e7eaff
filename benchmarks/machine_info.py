"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform


def machine(**extra) -> dict:
    """The CPU (name, family, model, counts), load, GPUs, versions, the date; plus `extra`."""
    import tensorflow as tf

    from manga_pix2pix.training.strategy import cpu_fields

    fields = cpu_fields("model name", "cpu family", "model")
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
