"""The origin the service names itself by in absolute URLs (the RFC 8414 metadata).

``AUTHAPI_ISSUER`` when it is an http(s) URL; else, served over HTTPS with one name in
``ALLOWED_HOSTS``, that name; else the request's host, in one canonical form: a client may
write an allowed host in any case, with a trailing dot or a port of its choosing, and a
shared cache must not hand that spelling to everyone (the caller adds ``Vary: Host``).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

from authapi.errors import InvalidHost

# A host as Django's own validation reads it: a name or a bracketed IPv6 address, a port.
_HOST = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]+))?")


def split_host(host: str) -> tuple[str, str]:
    """(name, port) of a Host value, the name lower case without a trailing dot; ("", "")
    if it is no host. fullmatch: "$" would let a final "\n" through."""
    found = _HOST.fullmatch(host.lower())
    if found is None:
        return "", ""
    return found[1].removesuffix("."), found[2] or ""


def pinned_host() -> str | None:
    """The one host the service can be named by: served over HTTPS (``SECURE_SSL_REDIRECT``)
    with a single name in ``ALLOWED_HOSTS`` (no wildcard, no subdomain pattern)."""
    hosts = [str(h) for h in settings.ALLOWED_HOSTS]
    if not settings.SECURE_SSL_REDIRECT or len(hosts) != 1:
        return None
    domain, port = split_host(hosts[0])
    if not domain or port or domain.startswith(".") or "*" in hosts[0]:
        return None
    return domain


def of(request: HttpRequest, issuer: str | None) -> tuple[str, bool]:
    """Scheme and host of the metadata's absolute URLs, and whether they depend on the
    request's Host: the issuer's when it is an http(s) URL, else the pinned host, else the
    request's host in one canonical form (lower case, no trailing dot, no default port).
    InvalidHost (400) for a host Django refuses or a port out of range."""
    if issuer:
        parts = urlsplit(issuer)
        if parts.scheme in {"http", "https"} and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}", False
    pinned = pinned_host()
    if pinned is not None:
        return f"https://{pinned}", False
    domain, port = split_host(request.get_host())  # DisallowedHost: 400
    if not domain:
        raise InvalidHost()
    scheme = request.scheme or "http"
    if port:
        number = int(port)  # ASCII digits: the host pattern above allows nothing else
        if not 0 < number < 65536:
            raise InvalidHost()
        if (scheme, number) not in (("http", 80), ("https", 443)):
            domain = f"{domain}:{number}"
    return f"{scheme}://{domain}", True
