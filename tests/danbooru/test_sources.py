"""The three booru sources read the fake site's posts right, and page through them."""

from __future__ import annotations

import pytest
from fake_booru import FakePost, png

from manga_pix2pix.errors import UserError
from tfds_danbooru.scrape import (
    DanbooruSource,
    HtmlSource,
    HttpClient,
    SafebooruSource,
    danbooru,
    safebooru,
)
from tfds_danbooru.scrape.http import FetchError
from tfds_danbooru.scrape.posts import as_id, as_md5, as_rating, as_tags, resolve_url
from tfds_danbooru.scrape.safebooru import parse_page


def client(url, **kwargs) -> HttpClient:
    return HttpClient(url, rate_limit=0, timeout=2, retries=0, **kwargs)


def by_id(posts):
    return {p.id: p for p in posts if p.id is not None}


@pytest.mark.parametrize("make_source", [
    lambda c: DanbooruSource(c, ratings=None, page_size=5),
    lambda c: SafebooruSource(c, page_size=5, json_api=True),
    lambda c: SafebooruSource(c, page_size=5, json_api=False),
], ids=["danbooru", "safebooru-json", "safebooru-xml"])
def test_api_sources_read_every_post(booru, make_source):
    posts = list(make_source(client(booru.url)).iter_posts())
    expected = [p for p in booru.posts if p.raw_id is None]
    assert [p.id for p in posts if p.id is not None] == [p.id for p in expected]
    assert sum(p.problem == "malformed" for p in posts) == 1  # the id "103x"
    got = by_id(posts)
    for fake in expected:
        post = got[fake.id]
        assert post.md5 == fake.md5
        assert post.rating == fake.rating
        assert post.tags == fake.tags
        assert (post.width, post.height) == (fake.width, fake.height)
    assert got[120].file_url == booru.url + "data/120.png"
    assert got[102].file_url == booru.url + "images/7/102.png"
    # "../../x.png" resolves to a URL on the site; it never names a local file.
    assert got[110].file_url == booru.url + "x.png"
    assert got[111].problem == "no_file_url" and got[111].file_url is None


def test_danbooru_pages_with_the_b_cursor(booru):
    list(DanbooruSource(client(booru.url), ratings=None, page_size=5).iter_posts())
    pages = [q.get("page", [None])[0] for path, q in booru.queries if path == "/posts.json"]
    assert pages == [None, "b116", "b111", "b106", "b101", "b100"]


def test_danbooru_puts_the_rating_in_the_search_when_a_tag_slot_is_free(booru):
    posts = list(DanbooruSource(client(booru.url), tags=["solo"], ratings=["g", "s"]).iter_posts())
    assert {p.rating for p in posts if p.id is not None} == {"g", "s"}
    assert booru.queries[0][1]["tags"] == ["solo rating:g,s"]
    list(DanbooruSource(client(booru.url), tags=["solo", "staff"], ratings=["g"]).iter_posts())
    assert booru.queries[-1][1]["tags"] == ["solo staff"]


def test_safebooru_switches_to_the_id_cursor_past_deep_pages(make_booru):
    server = make_booru([FakePost(i, None, None) for i in range(1, 31)], deep_limit=10)
    source = SafebooruSource(client(server.url), page_size=5, deep_limit=10)
    assert [p.id for p in source.iter_posts()] == list(range(30, 0, -1))
    asked = [(q["pid"][0], q["tags"][0]) for _, q in server.queries]
    assert asked[:3] == [("0", ""), ("1", ""), ("0", "id:<21")]
    assert all(int(pid) * 5 < 10 for pid, _ in asked)


def test_html_source_lists_then_reads_post_pages(booru):
    source = HtmlSource(client(booru.url))
    listed = list(source.iter_posts())
    assert [p.id for p in listed] == [p.id for p in booru.posts if p.raw_id is None]
    assert all(p.file_url is None and p.rating == "" for p in listed)
    assert len(listed) % 4 == 0
    assert booru.requests["/index.php"] == len(listed) // 4 + 1  # pages of 4, then an empty one
    post = source.details(by_id(listed)[110])
    assert post.file_url == booru.url + "x.png"
    assert post.rating == "g" and post.tags == ("solo",) and (post.width, post.height) == (48, 48)
    assert source.details(by_id(listed)[109]).rating == "e"
    assert source.details(by_id(listed)[111]).problem == "no_file_url"


def test_a_failing_search_page_is_retried(make_booru):
    server = make_booru([FakePost(2, None, None), FakePost(1, None, None)], listing_errors=2)
    retrying = HttpClient(server.url, rate_limit=0, retries=2, backoff=0.01)
    assert [p.id for p in DanbooruSource(retrying, ratings=None).iter_posts()] == [2, 1]
    assert server.requests["/posts.json"] == 4  # two 503s, the page, the empty end
    server.listing_errors = 3
    with pytest.raises(UserError, match=r"keeps failing: HTTP 503 \(after 3 tries\)"):
        list(SafebooruSource(retrying).iter_posts())


def test_no_results_is_an_empty_iteration(booru):
    assert list(DanbooruSource(client(booru.url), tags=["no_such_tag"]).iter_posts()) == []
    assert list(SafebooruSource(client(booru.url), tags=["no_such_tag"]).iter_posts()) == []
    assert list(HtmlSource(client(booru.url), tags=["no_such_tag"]).iter_posts()) == []


def test_listing_errors_are_one_line_user_errors(make_booru, closed_port_url):
    server = make_booru([FakePost(1, png(1), "/a.png")], auth=("alice", "key"))
    with pytest.raises(UserError, match=r"refused access \(HTTP 401\) \(Invalid API key\); "
                                        r"check DANBOORU_LOGIN"):
        list(DanbooruSource(client(server.url)).iter_posts())
    ok = DanbooruSource(client(server.url, auth=("alice", "key")), ratings=None)
    assert [p.id for p in ok.iter_posts()] == [1]
    with pytest.raises(UserError, match="cannot reach 127.0.0.1"):
        list(SafebooruSource(client(closed_port_url)).iter_posts())


def test_dapi_page_parsing_refuses_entities_and_reports_errors():
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><posts>&a;</posts>'
    with pytest.raises(Exception, match="DOCTYPE"):
        parse_page(bomb, "u")
    with pytest.raises(Exception, match="Too deep"):
        parse_page(b'<response success="false" reason="Too deep"/>', "u")
    assert parse_page(b"  ", "u") == []
    assert parse_page(b'<posts count="0"></posts>', "u") == []
    with pytest.raises(FetchError, match="not valid JSON"):
        parse_page(b"[" * 100_000, "u")  # nested too deep for the JSON decoder


def test_a_malformed_md5_makes_the_post_malformed():
    base = "http://127.0.0.1:9/"
    item = {"id": 3, "file_url": "/a.png", "rating": "g"}
    for bad in ("xyz", "../../../../tmp/pwn", 12345):
        assert danbooru.parse_post(dict(item, md5=bad), base).problem == "malformed"
        assert safebooru.parse_post(dict(item, hash=bad), base).problem == "malformed"
    for missing in ({}, {"md5": ""}):  # no md5 at all is allowed: some posts have none
        post = danbooru.parse_post(dict(item, **missing), base)
        assert post.problem is None and post.md5 is None
    good = danbooru.parse_post(dict(item, md5="AB" * 16), base)
    assert good.problem is None and good.md5 == "ab" * 16


def test_a_listing_nested_too_deep_is_one_line(make_booru):
    server = make_booru([])
    server.listing_body = b"[" * 200_000
    with pytest.raises(UserError, match="not JSON"):
        list(DanbooruSource(client(server.url), ratings=None).iter_posts())


def test_field_validation():
    assert as_id(5) == 5 and as_id("17") == 17
    assert as_id(True) is None and as_id("1e3") is None and as_id(-4) is None
    assert as_id(0) is None and as_id(2**70) is None and as_id("１２") is None
    assert as_md5("A" * 32) == "a" * 32 and as_md5("../../etc") is None
    assert as_rating("General") == "g" and as_rating("safe") == "s" and as_rating(3) == ""
    # JSON may carry lone surrogates; they could not be stored or packed.
    assert as_tags("solo bad\ud800tag  x") == ("solo", "x")
    assert as_tags(["a", 3, None, "b\x00"]) == ("a",)
    base = "http://127.0.0.1:9/"
    assert resolve_url("//cdn.example.org/a.png", base) == "http://cdn.example.org/a.png"
    assert resolve_url("javascript:alert(1)", base) is None
    assert resolve_url("file:///etc/passwd", base) is None
    assert resolve_url(["x"], base) is None
    assert resolve_url("/a\udc80.png", base) is None
