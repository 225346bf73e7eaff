"""Training: the distributed train step, the strategy, the data stream and the loop."""

from manga_pix2pix.training.loop import Trainer, train

__all__ = ["Trainer", "train"]
