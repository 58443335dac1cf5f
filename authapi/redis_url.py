"""``REDIS_URL`` forms: one server, a Redis Cluster, or a master found through Sentinel.

* ``redis://[user:pass@]host:port/db``, ``rediss://...``, ``unix:///path.sock``: one server.
* ``redis+cluster://[user:pass@]host:port[,host:port...]`` (``rediss+cluster://`` for
  TLS): a Redis Cluster, discovered from any of the nodes named. Every script touches the
  keys of one user only, all under one hash tag, so each runs on one node.
* ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]`` (or
  ``rediss+sentinel://``): the current master of ``service`` as the sentinels name it,
  followed through failovers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.cluster
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

Client = Redis | RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}


def _nodes(netloc: str, url_kind: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The (host, port) list and the credentials of ``user:pass@h1:p1,h2:p2``."""
    credentials, _, hosts = netloc.rpartition("@")
    username = password = None
    if credentials:
        user, sep, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = item.strip(), "6379" if url_kind == "cluster" else "26379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_URL: {item!r} is not host:port.")
        nodes.append((host, int(port)))
    return nodes, username, password


def connect(url: str, **options: Any) -> Client:
    """A client for any supported ``REDIS_URL``; ``options`` are connection settings."""
    client: Client = _connect(url, options, Redis, RedisCluster, ClusterNode, Sentinel)
    return client


def connect_sync(url: str, **options: Any) -> SyncClient:
    """The blocking client of the same URL, for code that runs in a thread (allauth's sync
    views): the same servers and keys, never the event loop's connections."""
    client: SyncClient = _connect(
        url,
        options,
        redis.Redis,
        redis.cluster.RedisCluster,
        redis.cluster.ClusterNode,
        redis.sentinel.Sentinel,
    )
    return client


def _connect(
    url: str, options: dict[str, Any], single: Any, cluster: Any, node: Any, sentinels: Any
) -> Any:
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        parts = urlsplit(url)
        nodes, username, password = _nodes(parts.netloc, "cluster")
        return cluster(
            startup_nodes=[node(host, port) for host, port in nodes],
            username=username,
            password=password,
            ssl=CLUSTER_SCHEMES[scheme],
            **{k: v for k, v in options.items() if k != "health_check_interval"},
        )
    if scheme in SENTINEL_SCHEMES:
        parts = urlsplit(url)
        nodes, username, password = _nodes(parts.netloc, "sentinel")
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ImproperlyConfigured(
                "REDIS_URL: a Sentinel URL names the service: redis+sentinel://host:port/mymaster"
            )
        db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
        timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
        sentinel_kwargs = {**timeouts, "username": username, "password": password}
        sentinel = sentinels(nodes, sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(
            unquote(path[0]),
            username=username,
            password=password,
            db=db,
            ssl=SENTINEL_SCHEMES[scheme],
            **options,
        )
    return single.from_url(url, **options)
