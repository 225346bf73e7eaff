"""The fixed train/test assignment of post ids, shared by the builder and the sources."""

from __future__ import annotations

import hashlib


def split_hash(post_id: int) -> float:
    """A post id's fixed place in [0, 1): the first 8 bytes of SHA-256("danbooru:<id>")."""
    digest = hashlib.sha256(f"danbooru:{post_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
