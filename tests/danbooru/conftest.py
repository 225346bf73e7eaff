"""Fixtures: a fake booru site on 127.0.0.1, started per test."""

from __future__ import annotations

import socket

import pytest
from fake_booru import BooruServer, standard_posts


@pytest.fixture
def make_booru():
    """Starts a `BooruServer(posts or standard_posts(), **options)`; stops it after the test."""
    servers = []

    def make(posts=None, **options) -> BooruServer:
        server = BooruServer(standard_posts() if posts is None else posts, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def booru(make_booru) -> BooruServer:
    """The fake site with the standard posts (every fault)."""
    return make_booru()


@pytest.fixture
def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
