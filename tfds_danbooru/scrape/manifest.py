"""The manifest of a manual dir: one SQLite row per post seen, what became of it and why.

Layout of a manual dir (by default `<data-dir>/downloads/manual/danbooru/`):

    manifest.sqlite     table `posts`: id, md5, url, tags (JSON list), rating, source,
                        status ("done", "skipped" or "failed"), reason, file, width, height,
                        updated; table `meta`: key/value (the source that filled the dir)
    images/<id>.<ext>   verified original files, named by post id; ext from the file's bytes

A row is marked "done" only after its file has been renamed into place, in a transaction of
its own, so a run killed at any instant (kill -9 included) leaves a manifest that is true:
every "done" row has its file. SQLite's rollback journal makes each commit atomic. "failed"
rows (network trouble) are tried again by the next run; "skipped" rows say why a post was
left out. md5s of "done" rows are unique (a partial unique index), so the dataset never holds
the same file twice.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import time
from pathlib import Path

from manga_pix2pix.errors import UserError

MANIFEST_NAME = "manifest.sqlite"
IMAGES_DIR = "images"

DONE, SKIPPED, FAILED = "done", "skipped", "failed"

#: The only file names a "done" row may point at: images/<id>.<ext>.
_FILE_RE = re.compile(r"^images/([1-9][0-9]{0,18})\.(png|jpg|webp|bmp|tiff)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    md5 TEXT,
    url TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    rating TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT,
    file TEXT,
    width INTEGER,
    height INTEGER,
    updated REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS posts_done_md5 ON posts(md5) WHERE status = 'done';
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row (see the module docstring for the columns)."""

    id: int
    md5: str | None
    url: str | None
    tags: tuple[str, ...]
    rating: str
    source: str
    status: str
    reason: str | None
    file: str | None
    width: int | None
    height: int | None


def _row(record: sqlite3.Row) -> Row:
    try:
        tags = json.loads(record["tags"])
    except (TypeError, ValueError):
        tags = []
    if not isinstance(tags, list):
        tags = []
    return Row(
        id=int(record["id"]),
        md5=record["md5"],
        url=record["url"],
        tags=tuple(str(t) for t in tags),
        rating=record["rating"] or "",
        source=record["source"] or "",
        status=record["status"],
        reason=record["reason"],
        file=record["file"],
        width=record["width"],
        height=record["height"],
    )


def _disk_full(err: sqlite3.Error) -> bool:
    return "disk is full" in str(err) or "disk I/O error" in str(err)


class Manifest:
    """Read-write access to a manual dir's manifest (created if missing).

    Args:
        manual_dir: the manual dir; `manifest.sqlite` lives directly in it.
    """

    def __init__(self, manual_dir: str | Path):
        self.path = Path(manual_dir) / MANIFEST_NAME
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            if _disk_full(err):
                raise UserError(f"the disk is full: cannot write {self.path}") from None
            raise UserError(f"{self.path}: not a usable manifest ({err})") from None

    def close(self) -> None:
        """Closes the database."""
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, args: tuple) -> None:
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(sql, args)
        except sqlite3.OperationalError as err:
            if _disk_full(err):
                raise UserError(f"the disk is full: cannot write {self.path}") from None
            raise

    def get(self, post_id: int) -> Row | None:
        """The row of `post_id`, or None."""
        record = self._conn.execute("SELECT * FROM posts WHERE id = ?", (post_id,)).fetchone()
        return _row(record) if record else None

    def done_id_with_md5(self, md5: str) -> int | None:
        """The id of the "done" row whose file has this md5, or None."""
        record = self._conn.execute(
            "SELECT id FROM posts WHERE status = 'done' AND md5 = ?", (md5,)
        ).fetchone()
        return int(record["id"]) if record else None

    def count_done(self) -> int:
        """How many images the manual dir holds."""
        return self._conn.execute("SELECT COUNT(*) FROM posts WHERE status = 'done'").fetchone()[0]

    def record(
        self,
        post_id: int,
        *,
        status: str,
        reason: str | None = None,
        md5: str | None = None,
        url: str | None = None,
        tags: tuple[str, ...] | list[str] = (),
        rating: str = "",
        source: str = "",
        file: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        """Inserts or replaces the row of `post_id` (one committed transaction).

        Raises:
            sqlite3.IntegrityError: a "done" row with the same md5 exists under another id.
            UserError: the disk is full.
        """
        if status not in (DONE, SKIPPED, FAILED):
            raise ValueError(f"status: must be done, skipped or failed, got {status!r}")
        if status == DONE and (not file or not _FILE_RE.match(file)):
            raise ValueError(f"file: a done row needs images/<id>.<ext>, got {file!r}")
        self._write(
            "INSERT OR REPLACE INTO posts (id, md5, url, tags, rating, source, status, reason,"
            " file, width, height, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (post_id, md5, url, json.dumps(list(tags)), rating, source, status, reason, file,
             width, height, time.time()),
        )

    def get_meta(self, key: str) -> str | None:
        """A value of the `meta` table, or None."""
        record = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return record["value"] if record else None

    def set_meta(self, key: str, value: str) -> None:
        """Sets a value of the `meta` table."""
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def rows(self, status: str | None = None) -> list[Row]:
        """All rows (or those with `status`), ordered by id."""
        if status is None:
            cursor = self._conn.execute("SELECT * FROM posts ORDER BY id")
        else:
            cursor = self._conn.execute(
                "SELECT * FROM posts WHERE status = ? ORDER BY id", (status,))
        return [_row(r) for r in cursor]


def read_done_rows(manual_dir: str | Path) -> list[Row]:
    """The "done" rows of a manual dir, read-only, with their file paths checked.

    Rows whose `file` is not `images/<id>.<ext>` for their own id are left out, so a
    hand-edited manifest cannot point the builder outside the manual dir.

    Raises:
        UserError: there is no manifest, or it is not a SQLite database.
    """
    path = Path(manual_dir).resolve() / MANIFEST_NAME
    if not path.is_file():
        raise UserError(
            f"{path}: no manifest; fill the manual dir first with `manga-pix2pix build-dataset`"
        )
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            conn.row_factory = sqlite3.Row
            records = conn.execute(
                "SELECT * FROM posts WHERE status = 'done' ORDER BY id").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise UserError(f"{path}: not a usable manifest ({err})") from None
    rows = []
    for record in records:
        row = _row(record)
        match = _FILE_RE.match(row.file or "")
        if match and int(match.group(1)) == row.id:
            rows.append(row)
    return rows
