"""Data: sketch and cue ops, the synthetic source, and the tf.data pipeline."""
