"""Who is asking, behind a load balancer: the client address the per-address limits count.

Behind HAProxy or nginx every request comes from the balancer's address, so per-address
rates and lock-outs would count every client as one (one guesser would lock everyone out).
The balancer appends the address it saw to ``X-Forwarded-For``; that header is believed only
when the peer is a configured trusted proxy, and then only its rightmost hops: every hop
left of the nearest untrusted one is whatever the client chose to write.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

MAX_ADDRESS = 64  # characters kept of a forwarded address (it is a key of in-memory tables)


def relayed(request: web.Request, trusted_proxies: Collection[str]) -> bool:
    """Whether a trusted proxy relayed ``request`` for someone else (it named them in ``X-Forwarded-For``)."""
    return (request.remote or "?") in trusted_proxies and bool(request.headers.getall("X-Forwarded-For", []))


def client_address(request: web.Request, trusted_proxies: Collection[str]) -> str:
    """The peer, or behind trusted proxies the nearest ``X-Forwarded-For`` hop that is not one of them."""
    peer = request.remote or "?"
    if peer not in trusted_proxies:
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop[:MAX_ADDRESS]
    return peer
