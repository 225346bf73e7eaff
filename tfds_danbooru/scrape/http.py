"""A polite HTTP client: a rate limit, retries with back-off, and capped response sizes.

Every request, retries included, waits for the rate limiter (default 1 request/s). Requests
go only to the base URL's site: its host (on any port), or for a host name another host of
the same domain (`cdn.donmai.us` for `danbooru.donmai.us`); redirects are followed one by one
and refused when they lead elsewhere. `timeout` bounds the connection and each wait for more
data, and a whole body gets `ANSWER_TIMEOUTS` times that, so a server that trickles a byte at a
time is cut off too. Timeouts, connection errors, a body cut short, HTTP 5xx and 429 are
retried with exponential back-off (1, 2, 4, ... s); a `Retry-After` header is honoured, but
never waited on for longer than `max_wait`. Other 4xx answers are not retried. Bodies are
streamed and abandoned as soon as they pass `max_bytes` (a `Content-Length` over the cap is
refused before reading). HTTP Basic credentials are only ever sent to the base URL's host and
port, never to image hosts.

The retry loop is written out rather than delegated to urllib3's `Retry` because it must also
retry a body that breaks off mid-stream, rate-limit every attempt and cap `Retry-After`.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from manga_pix2pix import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"manga-pix2pix/{__version__} (dataset builder; polite scraper, about 1 request/s)"

#: Largest listing page (JSON, XML or HTML) read, in bytes.
MAX_PAGE_BYTES = 32 * 1024 * 1024
#: Largest image file downloaded by default, in bytes.
MAX_IMAGE_BYTES = 64 * 1024 * 1024

#: A whole answer (status, headers and body) may take this many times `timeout`.
ANSWER_TIMEOUTS = 10
#: Redirects followed for one request.
MAX_REDIRECTS = 5

_CHUNK = 64 * 1024
_ERROR_BODY_BYTES = 2048


class FetchError(Exception):
    """A request that did not give a usable answer.

    Attributes:
        url: the URL requested.
        reason: a short code: "unreachable", "timeout", "broken_body", "http_<status>",
            "too_large".
        status: the HTTP status, if an answer came.
        transient: True if trying again later may work (network trouble, 5xx, 429).
        body: the first bytes of an error answer's body (b"" if none).
    """

    def __init__(self, url: str, reason: str, detail: str = "", *, status: int | None = None,
                 transient: bool = False):
        super().__init__(f"{url}: {detail or reason}")
        self.url = url
        self.reason = reason
        self.detail = detail or reason
        self.status = status
        self.transient = transient
        self.body = b""


class RateLimiter:
    """Spaces calls at least `1 / rate` seconds apart (thread-safe); `rate <= 0` disables it."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 and math.isfinite(rate) else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Blocks until the next call is allowed."""
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """GET requests to one site, politely.

    Args:
        base_url: the site's root URL; relative URLs resolve against it.
        rate_limit: requests per second at most (all hosts together).
        timeout: seconds to wait for a connection and for each read.
        retries: how many times a failed request is tried again.
        backoff: the first back-off wait in seconds; it doubles on each retry.
        max_wait: the longest single wait, `Retry-After` included.
        auth: (login, api key) for HTTP Basic, sent to the base URL's host only.
        session: a `requests.Session` to use (a new one by default).
    """

    def __init__(
        self,
        base_url: str,
        *,
        rate_limit: float = 1.0,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        auth: tuple[str, str] | None = None,
        session: requests.Session | None = None,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url: must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.host = parts.netloc.lower()
        self.hostname = parts.hostname  # lower case, as urlsplit gives it
        self.site = _site(parts.hostname)
        self.limiter = RateLimiter(rate_limit)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_wait = max_wait
        self.auth = auth
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.requests_made = 0

    def allows(self, url: str) -> bool:
        """Whether `url` is http(s) on the base URL's site (see the module docstring)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.hostname == self.hostname:  # any port of the base URL's host
            return True
        return self.site is not None and _site(parts.hostname) == self.site

    def get(self, url: str, params: dict | None = None, *, max_bytes: int = MAX_PAGE_BYTES
            ) -> bytes:
        """Returns the body of a successful GET of `url`.

        Raises:
            FetchError: after the retries for transient failures, at once for other 4xx
                answers and for bodies over `max_bytes`.
        """
        attempt = 0
        while True:
            try:
                return self._get_once(url, params, max_bytes)
            except _Retry as retry:
                if attempt >= self.retries:
                    raise retry.error from None
                wait = self.backoff * 2**attempt
                if retry.after is not None:
                    wait = retry.after
                if wait > self.max_wait:
                    log.info("%s: capping a wait of %.0f s at %.0f s", url, wait, self.max_wait)
                    wait = self.max_wait
                log.info("%s: %s; retrying in %.1f s", url, retry.error.detail, wait)
                time.sleep(wait)
                attempt += 1

    def _get_once(self, url: str, params: dict | None, max_bytes: int) -> bytes:
        deadline = time.monotonic() + ANSWER_TIMEOUTS * self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allows(url):
                raise FetchError(url, "bad_url", f"not on the site of {self.base_url}")
            location = self._answer(url, params, max_bytes, deadline)
            if isinstance(location, bytes):
                return location
            url, params = location, None
        raise FetchError(url, "bad_url", f"more than {MAX_REDIRECTS} redirects")

    def _answer(self, url: str, params: dict | None, max_bytes: int, deadline: float
                ) -> bytes | str:
        """The body of one GET of `url`, or where it redirects to."""
        self.limiter.wait()
        self.requests_made += 1
        auth = self.auth if urlsplit(url).netloc.lower() == self.host else None
        try:
            with self.session.get(url, params=params, auth=auth, timeout=self.timeout,
                                  stream=True, allow_redirects=False) as response:
                return self._read(response, url, max_bytes, deadline)
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError) as err:
            raise _Retry(FetchError(url, "timeout", f"timed out ({err.__class__.__name__})",
                                    transient=True)) from None
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError, urllib3.exceptions.ProtocolError,
                urllib3.exceptions.DecodeError) as err:
            raise _Retry(FetchError(url, "broken_body", f"the answer broke off ({err})",
                                    transient=True)) from None
        except requests.ConnectionError as err:
            # A read timeout while streaming the body surfaces as a ConnectionError.
            reason = "timeout" if "timed out" in str(err) else "unreachable"
            raise _Retry(FetchError(url, reason, _short_reason(err), transient=True)) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.TooManyRedirects,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as err:
            raise FetchError(url, "bad_url", str(err)) from None
        except requests.RequestException as err:
            # Anything else requests reports (a malformed answer, a bad header) is the
            # server's trouble: worth another try later.
            raise _Retry(FetchError(url, "bad_answer", str(err)[:200], transient=True)) from None

    def _read(self, response: requests.Response, url: str, max_bytes: int, deadline: float
              ) -> bytes | str:
        """The body of a successful answer, or the URL a redirect points to.

        Raises:
            FetchError, _Retry: an error answer, or a body over `max_bytes`.
            requests.Timeout: the body still arriving at `deadline`.
        """
        status = response.status_code
        if status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
            return urljoin(url, response.headers["Location"])
        if status == 429 or status >= 500:
            raise _Retry(
                FetchError(url, f"http_{status}", f"HTTP {status}", status=status,
                           transient=True),
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 400:
            error = FetchError(url, f"http_{status}", f"HTTP {status}", status=status)
            # The start of the body often says why (e.g. a JSON "message").
            error.body = next(response.iter_content(_ERROR_BODY_BYTES), b"")
            raise error
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise FetchError(url, "too_large", f"{length} bytes is over the cap of "
                             f"{max_bytes}")
        # `read1` returns after each read from the socket, where `iter_content` waits for a
        # whole chunk: a server that trickles a byte at a time is seen at the deadline.
        raw = response.raw
        chunks = (iter(lambda: raw.read1(_CHUNK, decode_content=True), b"")
                  if hasattr(raw, "read1") else response.iter_content(_CHUNK))
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(url, "too_large", f"over the cap of {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the answer took over {ANSWER_TIMEOUTS} x the timeout")
        return bytes(body)


class _Retry(Exception):
    def __init__(self, error: FetchError, after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.after = after


def _short_reason(err: Exception) -> str:
    """The innermost reason of a requests connection error, e.g. 'Connection refused'."""
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Network is unreachable",
                   "Connection reset", "Connection aborted", "timed out"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else err.__class__.__name__


def _site(hostname: str) -> str | None:
    """The domain a host name belongs to (its last two labels), or None for an IP address or a
    single-label name such as `localhost`, which share a site with nothing else."""
    labels = hostname.lower().rstrip(".").split(".")
    if len(labels) < 2 or labels[-1].isdigit() or ":" in hostname:
        return None
    return ".".join(labels[-2:])

