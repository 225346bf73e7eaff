"""danbooru dataset."""

import tensorflow_datasets as tfds

from tfds_danbooru.danbooru import danbooru_dataset_builder


class DanbooruTest(tfds.testing.DatasetBuilderTestCase):
    """Tests for danbooru dataset.

    The dummy manual dir (made by `make_dummy_data.py`) holds five images; with the default 5%
    test fraction none of their ids hashes into test, so the lowest-hash one is moved there.
    Its skipped row and its forged row pointing outside the folder must not become examples.
    """

    DATASET_CLASS = danbooru_dataset_builder.Builder
    SPLITS = {
        "train": 4,
        "test": 1,
    }
    BUILDER_CONFIG_NAMES_TO_TEST = ["64", "128-top"]
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
