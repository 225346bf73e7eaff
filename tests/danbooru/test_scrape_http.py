"""The polite HTTP client against the fake site: retries, back-off, caps, auth, rate limit."""

from __future__ import annotations

import time

import pytest
from fake_booru import FakePost, png

from tfds_danbooru.scrape.http import FetchError, HttpClient, RateLimiter, retry_after_seconds


def client(url, **kwargs) -> HttpClient:
    options = dict(rate_limit=0, timeout=0.5, retries=2, backoff=0.05, max_wait=5.0)
    options.update(kwargs)
    return HttpClient(url, **options)


def test_retries_a_500_then_succeeds(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="500_once")])
    assert client(server.url).get(server.url + "a.png") == server.by_path["/a.png"].data
    assert server.requests["/a.png"] == 2


def test_honours_retry_after(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="429_once")])
    start = time.monotonic()
    client(server.url).get(server.url + "a.png")
    assert time.monotonic() - start >= 0.95  # Retry-After: 1, not the 0.05 s back-off
    assert server.requests["/a.png"] == 2


def test_caps_a_long_retry_after(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="429_long_once")])
    start = time.monotonic()
    client(server.url, max_wait=0.2).get(server.url + "a.png")
    assert time.monotonic() - start < 5


def test_retries_a_response_slower_than_the_timeout(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="slow_once")], slow_seconds=1.5)
    assert client(server.url, timeout=0.3).get(server.url + "a.png")
    assert server.requests["/a.png"] == 2


def test_retries_a_body_that_breaks_off(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="broken_once")])
    assert client(server.url).get(server.url + "a.png") == server.by_path["/a.png"].data
    assert server.requests["/a.png"] == 2


def test_gives_up_after_the_retries(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png", fault="500_once")])
    with pytest.raises(FetchError) as err:
        client(server.url, retries=0).get(server.url + "a.png")
    assert err.value.reason == "http_500" and err.value.transient


def test_a_404_is_not_retried(make_booru):
    server = make_booru([])
    with pytest.raises(FetchError) as err:
        client(server.url).get(server.url + "missing.png")
    assert err.value.status == 404 and not err.value.transient
    assert server.requests["/missing.png"] == 1


def test_caps_the_response_size(make_booru):
    data = png(1, 64, 64)
    server = make_booru([FakePost(1, data, "/a.png")])
    with pytest.raises(FetchError) as err:
        client(server.url).get(server.url + "a.png", max_bytes=len(data) - 1)
    assert err.value.reason == "too_large" and not err.value.transient
    assert client(server.url).get(server.url + "a.png", max_bytes=len(data)) == data


def test_unreachable_host(closed_port_url):
    with pytest.raises(FetchError) as err:
        client(closed_port_url, retries=1).get(closed_port_url + "posts.json")
    assert err.value.reason == "unreachable"


def test_credentials_go_to_the_base_host_only(make_booru):
    site = make_booru([], auth=("alice", "k3y"))
    other = make_booru([FakePost(1, png(1), "/a.png")])
    c = client(site.url, auth=("alice", "k3y"))
    assert c.get(site.url + "posts.json") == b"[]"
    c.get(other.url + "a.png")
    with pytest.raises(FetchError) as err:
        client(site.url, auth=("alice", "wrong")).get(site.url + "posts.json")
    assert err.value.status == 401 and b"Invalid API key" in err.value.body


def test_sends_a_user_agent_naming_the_tool(make_booru):
    server = make_booru([])
    c = client(server.url)
    assert c.session.headers["User-Agent"].startswith("manga-pix2pix/")


def test_rate_limiter_spaces_requests(make_booru):
    server = make_booru([FakePost(1, png(1), "/a.png")])
    c = client(server.url, rate_limit=20)
    start = time.monotonic()
    for _ in range(5):
        c.get(server.url + "a.png")
    assert time.monotonic() - start >= 4 / 20 - 0.01
    limiter = RateLimiter(0)
    start = time.monotonic()
    for _ in range(100):
        limiter.wait()
    assert time.monotonic() - start < 0.1


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_refuses_a_base_url_that_is_not_http():
    with pytest.raises(ValueError, match="base_url"):
        HttpClient("file:///etc/")
