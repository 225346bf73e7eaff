"""The `danbooru` dataset (TFDS `tfds new` layout)."""
