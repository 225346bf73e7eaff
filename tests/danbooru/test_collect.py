"""The download cache: what gets kept, skipped and recorded, and how a rerun resumes."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from fake_booru import FakePost, png

from manga_pix2pix.errors import UserError
from tfds_danbooru.scrape import (
    DanbooruSource,
    Filters,
    HtmlSource,
    HttpClient,
    Manifest,
    SafebooruSource,
    SyntheticSource,
    collect,
)
from tfds_danbooru.scrape.cache import file_ext, is_animated, lock_manual_dir


def client(url) -> HttpClient:
    return HttpClient(url, rate_limit=0, timeout=0.5, retries=3, backoff=0.05)


SOURCES = {
    "danbooru": lambda c: DanbooruSource(c, ratings=["g"], page_size=5),
    "safebooru-json": lambda c: SafebooruSource(c, page_size=5, json_api=True),
    "safebooru-xml": lambda c: SafebooruSource(c, page_size=5, json_api=False),
    "html": lambda c: HtmlSource(c),
}
FILTERS = Filters(ratings=("g",), min_resolution=32)


@pytest.mark.parametrize("name", list(SOURCES))
def test_keeps_every_valid_image_once_and_says_why_others_were_left_out(booru, tmp_path, name):
    manual = tmp_path / "manual"
    stats = collect(SOURCES[name](client(booru.url)), manual, filters=FILTERS)
    valid = {p.id: p for p in booru.posts if p.valid}
    with Manifest(manual) as manifest:
        done = {row.id: row for row in manifest.rows("done")}
        rows = {row.id: row for row in manifest.rows()}
    assert set(done) == set(valid)
    for post_id, row in done.items():
        assert (manual / row.file).read_bytes() == valid[post_id].data
        assert row.md5 == hashlib.md5(valid[post_id].data).hexdigest()
        assert row.file == f"images/{post_id}.{file_ext(valid[post_id].data)}"
    # Every valid image was downloaded in full exactly once.
    for post in valid.values():
        assert booru.completed[post.path] == 1, post.id
    assert stats.kept == stats.total == len(valid)
    expected_reasons = {
        114: "corrupt" if name == "html" else "md5_mismatch",  # truncated file
        113: "corrupt",
        111: "no_file_url",
        109: "rating",
        108: "rating",
        106: "animated",
        105: "too_small",
        100: "too_large",
    }
    if name != "html":
        expected_reasons[107] = "file_type"  # an .mp4 the API announces
    if name == "danbooru":
        # The search itself asked for rating:g, so the site never listed these.
        assert 108 not in rows and 109 not in rows
        del expected_reasons[108], expected_reasons[109]
    for post_id, reason in expected_reasons.items():
        assert rows[post_id].status == "skipped" and rows[post_id].reason == reason, post_id
    assert rows[112].reason == "duplicate_md5" and stats.duplicates["md5"] == 1
    if name != "html":
        # The site's md5 gave the duplicate away: its file was never requested.
        assert booru.requests["/data/112.png"] == 0
        assert stats.skipped["malformed"] == 1
    # Nothing was written anywhere but images/<id>.<ext> and the manifest.
    names = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert names == {f"manual/{row.file}" for row in done.values()} | {
        "manual/manifest.sqlite", "manual/.lock"}


def test_a_rerun_downloads_nothing_again(booru, tmp_path):
    manual = tmp_path / "manual"
    collect(SOURCES["danbooru"](client(booru.url)), manual, filters=FILTERS)
    before = dict(booru.requests)
    stats = collect(SOURCES["danbooru"](client(booru.url)), manual, filters=FILTERS)
    after = {path: n - before.get(path, 0) for path, n in booru.requests.items()}
    assert {path for path, n in after.items() if n} == {"/posts.json"}
    assert stats.kept == 0 and stats.fetched == 0 and stats.cached == stats.total == 10


def test_a_file_without_a_manifest_row_is_verified_not_trusted(make_booru, tmp_path):
    good, bad = png(1), png(2)
    server = make_booru([FakePost(2, good, "/2.png"), FakePost(1, bad, "/1.png")])
    manual = tmp_path / "manual"
    (manual / "images").mkdir(parents=True)
    # A run killed between the rename and the manifest commit left 2.png; 1.png is damaged.
    (manual / "images" / "2.png").write_bytes(good)
    (manual / "images" / "1.png").write_bytes(bad[:100])
    (manual / "images" / ".1.png.abc.tmp").write_bytes(b"half")
    stats = collect(DanbooruSource(client(server.url), ratings=None), manual, filters=Filters())
    assert stats.recovered == 1 and stats.fetched == 1
    assert server.requests["/2.png"] == 0 and server.completed["/1.png"] == 1
    assert (manual / "images" / "1.png").read_bytes() == bad
    assert not list((manual / "images").glob(".*.tmp"))


def test_a_missing_file_of_a_done_row_is_fetched_again(make_booru, tmp_path):
    server = make_booru([FakePost(1, png(1), "/1.png")])
    manual = tmp_path / "manual"
    collect(DanbooruSource(client(server.url), ratings=None), manual, filters=Filters())
    (manual / "images" / "1.png").unlink()
    stats = collect(DanbooruSource(client(server.url), ratings=None), manual, filters=Filters())
    assert server.completed["/1.png"] == 2 and stats.total == 1
    assert (manual / "images" / "1.png").is_file()


def test_transient_failures_are_retried_by_the_next_run(make_booru, tmp_path):
    server = make_booru([FakePost(1, png(1), "/1.png", fault="500_once")])
    manual = tmp_path / "manual"
    no_retry = HttpClient(server.url, rate_limit=0, retries=0)
    with pytest.raises(UserError, match="no usable images"):
        collect(DanbooruSource(no_retry, ratings=None), manual, filters=Filters())
    with Manifest(manual) as manifest:
        assert manifest.get(1).status == "failed" and manifest.get(1).reason == "http_500"
    stats = collect(DanbooruSource(no_retry, ratings=None), manual, filters=Filters())
    assert stats.kept == 1


def test_stops_at_max_images_counting_earlier_runs(booru, tmp_path):
    manual = tmp_path / "manual"
    first = collect(SOURCES["danbooru"](client(booru.url)), manual, filters=FILTERS,
                    max_images=3)
    assert first.total == 3 and first.stopped_at_max
    listing_requests = booru.requests["/posts.json"]
    again = collect(SOURCES["danbooru"](client(booru.url)), manual, filters=FILTERS,
                    max_images=3)
    assert again.kept == 0 and booru.requests["/posts.json"] == listing_requests
    more = collect(SOURCES["danbooru"](client(booru.url)), manual, filters=FILTERS,
                   max_images=5)
    assert more.kept == 2 and more.total == 5


def test_the_same_id_twice_is_one_post(make_booru, tmp_path):
    data = png(1)
    server = make_booru([FakePost(5, data, "/5.png"), FakePost(5, data, "/5.png"),
                         FakePost(4, png(2), "/4.png")])
    stats = collect(DanbooruSource(client(server.url), ratings=None), tmp_path, filters=Filters())
    assert stats.seen == 3 and stats.kept == 2 and stats.duplicates["id"] == 1
    assert server.completed["/5.png"] == 1


def test_other_ratings_on_request(booru, tmp_path):
    filters = Filters(ratings=("g", "s"), min_resolution=32)
    collect(DanbooruSource(client(booru.url), ratings=["g", "s"]), tmp_path / "a",
            filters=filters)
    with Manifest(tmp_path / "a") as manifest:
        assert manifest.get(108).status == "done"
        assert manifest.get(109) is None  # the search asked the site for g and s only
    # Without the rating in the search (no tag slot free), the check on each post holds.
    collect(DanbooruSource(client(booru.url), ratings=None), tmp_path / "b", filters=filters)
    with Manifest(tmp_path / "b") as manifest:
        assert manifest.get(108).status == "done"
        assert manifest.get(109).reason == "rating"  # explicit: never unless asked


def test_errors(booru, tmp_path):
    with pytest.raises(UserError, match="no posts match"):
        collect(DanbooruSource(client(booru.url), tags=["nothing_here"]), tmp_path / "a")
    with pytest.raises(UserError, match="no usable images.*rating.*--rating"):
        collect(DanbooruSource(client(booru.url), tags=["solo"], ratings=["e"]), tmp_path / "b",
                filters=Filters(ratings=("g",)))
    collect(SyntheticSource(32), tmp_path / "c", filters=Filters(ratings=None), max_images=1)
    with pytest.raises(UserError, match="holds posts from the 'synthetic' source"):
        collect(DanbooruSource(client(booru.url)), tmp_path / "c")


def test_synthetic_source_mixes_in_busy_images(tmp_path):
    source = SyntheticSource(32, busy_fraction=0.3)
    stats = collect(source, tmp_path, filters=Filters(ratings=None), max_images=40)
    with Manifest(tmp_path) as manifest:
        rows = manifest.rows("done")
    expected = [p.id for p in itertools.islice(source.iter_posts(), 40)]
    assert stats.total == 40 and [r.id for r in rows] == expected
    busy = [r for r in rows if "busy_style" in r.tags]
    assert 4 <= len(busy) <= 20
    assert all(source.detail(r.id) == 3.0 for r in busy)
    assert all(r.rating == "g" and r.source == "synthetic" for r in rows)


def test_one_build_at_a_time_per_manual_dir(tmp_path):
    lock = lock_manual_dir(tmp_path)
    try:
        with pytest.raises(UserError, match="another build is writing to it"):
            collect(SyntheticSource(32), tmp_path, filters=Filters(ratings=None), max_images=1)
    finally:
        lock.close()
    assert collect(SyntheticSource(32), tmp_path, filters=Filters(ratings=None),
                   max_images=1).total == 1


def test_file_checks():
    assert file_ext(png(1)) == "png" and file_ext(b"GIF89a....") is None
    apng = png(1).replace(b"IDAT", b"acTL", 1)
    assert is_animated(apng) and not is_animated(png(1))
