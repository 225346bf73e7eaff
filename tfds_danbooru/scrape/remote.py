"""What booru sources share: turning a failed listing request into one clear error."""

from __future__ import annotations

import json

from manga_pix2pix.errors import UserError
from tfds_danbooru.scrape.http import FetchError, HttpClient


def _server_message(body: bytes) -> str:
    """The server's own explanation in an error body (a JSON `message`), if short and clean."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, str) and message.isprintable():
        return message[:200]
    return ""


def listing_error(err: FetchError, client: HttpClient, *, credentials_hint: bool = False
                  ) -> UserError:
    """The `UserError` for a search page that could not be read.

    A listing page is the whole search: without it nothing can be done, so unlike a failed
    image download it ends the run with one line that says what to fix.
    """
    host = client.host
    tries = client.retries + 1
    if err.status in (401, 403):
        hint = (
            "; check DANBOORU_LOGIN and DANBOORU_API_KEY" if credentials_hint
            else "; the site may need a login or block this client"
        )
        message = _server_message(err.body)
        detail = f" ({message})" if message else ""
        return UserError(f"{host} refused access (HTTP {err.status}){detail}{hint}")
    if err.reason == "unreachable":
        return UserError(f"cannot reach {host}: {err.detail} (after {tries} tries)")
    if err.reason == "timeout":
        return UserError(f"{host} did not answer in {client.timeout:g} s (after {tries} tries)")
    if err.status is not None and err.transient:
        return UserError(f"{host} keeps failing: HTTP {err.status} (after {tries} tries)")
    if err.status is not None:
        message = _server_message(err.body)
        detail = f": {message}" if message else ""
        return UserError(f"{host} rejected the search with HTTP {err.status}{detail}")
    return UserError(f"{host}: cannot read the search results ({err.detail})")
