"""The polite HTTP client against the fake site: retries, back-off, caps, auth, rate limit."""

from __future__ import annotations

import contextlib
import http.server
import threading
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


class _Odd(http.server.BaseHTTPRequestHandler):
    """Answers that a polite client must not follow or wait on forever."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/ok":
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"fine")
        elif self.path in ("/here", "/away"):
            host = "127.0.0.1" if self.path == "/here" else "localhost"  # localhost: 127.0.0.1
            self.send_response(302)
            self.send_header("Location", f"http://{host}:{port}/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(1000):  # a byte every 0.1 s: within the read timeout each time
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)


@pytest.fixture
def odd_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_redirects_are_followed_on_the_site_only(odd_server):
    c = client(odd_server)
    assert c.get(odd_server + "here") == b"fine"
    away = odd_server.replace("127.0.0.1", "localhost")
    for url in (odd_server + "away", away + "ok"):
        with pytest.raises(FetchError) as err:
            c.get(url)
        assert err.value.reason == "bad_url" and "not on the site of" in str(err.value)
    assert c.requests_made == 3  # the refused host was never asked


def test_a_host_of_the_same_domain_is_on_the_site():
    c = client("https://danbooru.donmai.us/")
    assert c.allows("https://cdn.donmai.us/original/ab/cd/abcd.png")
    assert c.allows("http://danbooru.donmai.us:8080/x.png")
    assert not c.allows("https://donmai.us.evil.example/x.png")
    assert not c.allows("https://example.org/x.png")
    assert not c.allows("file:///etc/passwd")
    ip = client("http://127.0.0.1:8000/")
    assert ip.allows("http://127.0.0.1:9000/a.png") and not ip.allows("http://127.0.0.2/a.png")


def test_an_answer_that_trickles_is_cut_off_at_ten_times_the_timeout(odd_server):
    start = time.monotonic()
    with pytest.raises(FetchError) as err:
        client(odd_server, timeout=0.3, retries=0).get(odd_server + "trickle")
    assert err.value.reason == "timeout"
    assert 3.0 <= time.monotonic() - start < 6.0
