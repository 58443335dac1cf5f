"""Hostile clients against a real uvicorn worker: what they cost, before and after the limits.

    .venv/bin/python -m bench.hostile_clients

Each launch serves the project on a free 127.0.0.1 port (one process, so its pid is the
worker's), with a valkey-server of its own as the store, and is attacked three ways:

(a) 5 connections each sending a 40 MB header line that never ends;
(b) 200 connections sending a request line, then one header byte a second (slowloris);
(c) a 200 MB POST to /api/auth/login, once with a declared Content-Length, once chunked.

Worker RSS is sampled from /proc/<pid>/status every 10 ms. /proc/<pid>/io tells what the
worker read off its sockets (``rchar``) and wrote (``wchar``: the spooled body, on disk);
"client got out" is what the kernel took from the client, socket buffers included. Every
phase gets a fresh worker, so each starts from an idle RSS. Only loopback, only processes
started here (killed by pid), the whole run bounded to about three minutes.
"""

from __future__ import annotations

import http.client
import os
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
HEADER_BYTES = 40 * MB
HEADER_CONNECTIONS = 5
SLOW_CONNECTIONS = 200
BODY_BYTES = 200 * MB
CHUNK = 64 * 1024


def documented_flags() -> list[str]:
    """uvicorn's options on scripts/serve's launch line, less host, port and "$@"."""
    lines = (ROOT / "scripts" / "serve").read_text().replace("\\\n", " ").splitlines()
    line = next(x for x in lines if "project.asgi:application" in x and "uvicorn" in x)
    words = shlex.split(line.split("project.asgi:application", 1)[1])
    flags: list[str] = []
    skip = False
    for word in words:
        if skip or word == "$@":
            skip = False
            continue
        if word in ("--host", "--port"):
            skip = True
            continue
        flags.append(word)
    return flags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def io(pid: int, field: str) -> int:
    """``rchar`` (bytes the process read, sockets included) or ``wchar`` from /proc/<pid>/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class Peak:
    """The highest RSS seen while the ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.max = max(self.max, rss_mb(self.pid))
            except OSError:
                return

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Server:
    """uvicorn with the project, in its own process; ``env`` as tests/conftest.py sets it."""

    def __init__(self, app: str, flags: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "error", *flags]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"uvicorn exited: {self.log.read().decode()[-2000:]}")
            if health(self.port, timeout=1)[0] == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("uvicorn did not start in 30 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def health(port: int, timeout: float = 10) -> tuple[int, float]:
    """Status of GET /health (0: no answer) and seconds it took."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        status = conn.getresponse().status
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - start


def answer(sock: socket.socket) -> str:
    """What the server did to a connection: its status code, "closed", "reset" or "open"."""
    try:
        if not select.select([sock], [], [], 0)[0]:
            return "open"
        data = sock.recv(64, socket.MSG_PEEK)
    except ConnectionResetError:
        return "reset"
    except OSError:
        return "closed"
    if not data:
        return "closed"
    parts = data.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else "closed"


def _fates(socks: list[socket.socket]) -> str:
    counts: dict[str, int] = {}
    for s in socks:
        fate = answer(s)
        counts[fate] = counts.get(fate, 0) + 1
    return ", ".join(f"{n} {fate}" for fate, n in sorted(counts.items()))


def huge_headers(server: Server) -> dict[str, str]:
    """(a): 5 connections, each a 40 MB header value without an end."""
    idle, read = rss_mb(server.pid), io(server.pid, "rchar")
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    sent = [0] * len(socks)
    chunk = b"a" * CHUNK

    def attack(i: int) -> None:
        s = socks[i]
        s.settimeout(20)
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            while sent[i] < HEADER_BYTES:
                sent[i] += s.send(chunk)
        except OSError:
            pass

    with Peak(server.pid) as peak:
        start = time.perf_counter()
        threads = [threading.Thread(target=attack, args=(i,)) for i in range(len(socks))]
        for t in threads:
            t.start()
        status, took = health(server.port, timeout=30)
        for t in threads:
            t.join(timeout=40)
        elapsed = time.perf_counter() - start
        time.sleep(1)  # held open, never terminated
        held = rss_mb(server.pid)
        fates = _fates(socks)
    for s in socks:
        s.close()
    return {
        "(a) worker RSS idle -> peak MB": f"{idle:.0f} -> {peak.max:.0f}",
        "(a) RSS while held, MB": f"{held:.0f}",
        "(a) client got out, per conn": f"{min(sent) / MB:.2f}-{max(sent) / MB:.2f} MB",
        "(a) worker read, all 5": f"{(io(server.pid, 'rchar') - read) / MB:.2f} MB",
        "(a) connections then": fates,
        "(a) attack duration": f"{elapsed:.1f} s",
        "(a) GET /health during": f"{status or 'none'} in {took:.2f} s",
        "(a) worker survived": "yes" if server.alive() else "NO",
    }


def slowloris(server: Server) -> dict[str, str]:
    """(b): 200 connections, a header byte a second; count the open ones at 15 s and 30 s."""
    idle = rss_mb(server.pid)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    for s in socks:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    rows: dict[str, str] = {}
    start = time.monotonic()
    with Peak(server.pid) as peak:
        for checkpoint in (15, 30):
            while time.monotonic() - start < checkpoint:
                for s in socks:
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
                time.sleep(1)
            open_now = sum(answer(s) == "open" for s in socks)
            status, took = health(server.port)
            rows[f"(b) open after {checkpoint} s"] = f"{open_now}/{len(socks)}"
            rows[f"(b) GET /health at {checkpoint} s"] = (
                f"{status or 'none'} in {took * 1000:.0f} ms"
            )
    rows["(b) worker RSS idle -> peak MB"] = f"{idle:.0f} -> {peak.max:.0f}"
    for s in socks:
        s.close()
    return rows


def big_body(server: Server, chunked: bool) -> dict[str, str]:
    """(c): a 200 MB login body; stop sending as soon as an answer arrives."""
    kind = "chunked" if chunked else "Content-Length"
    head = b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += (
        b"Transfer-Encoding: chunked\r\n\r\n"
        if chunked
        else b"Content-Length: %d\r\n\r\n" % (BODY_BYTES)
    )
    piece = (b"%x\r\n" % CHUNK + b"a" * CHUNK + b"\r\n") if chunked else b"a" * CHUNK
    end = b"0\r\n\r\n" if chunked else b""
    idle, read, written = rss_mb(server.pid), io(server.pid, "rchar"), io(server.pid, "wchar")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head)  # small: fits the socket buffer
    sock.setblocking(False)
    sent = 0  # body bytes on the wire, chunk framing included
    total = BODY_BYTES // CHUNK * len(piece) + len(end)
    pending = b""
    reply = b""
    start = time.perf_counter()
    took = 0.0
    with Peak(server.pid) as peak:
        while time.perf_counter() < start + 60:
            writable = [sock] if sent < total else []
            readable, can_write, _ = select.select([sock], writable, [], 1)
            if readable:
                try:
                    reply = sock.recv(4096) or b"closed"
                except OSError:
                    reply = b"reset"
                took = time.perf_counter() - start
                break
            if can_write:
                if not pending:
                    pending = piece if total - sent > len(end) else end
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except OSError:
                    reply, took = b"reset", time.perf_counter() - start
                    break
                pending = pending[n:]
                sent += n
    sock.close()
    time.sleep(0.2)
    status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else reply.decode()
    return {
        f"(c) {kind}: client got out": f"{sent / MB:.1f} MB",
        f"(c) {kind}: worker read": f"{(io(server.pid, 'rchar') - read) / MB:.2f} MB",
        f"(c) {kind}: answer, time": f"{status or 'none'} after {took:.2f} s",
        f"(c) {kind}: RSS idle -> peak MB": f"{idle:.0f} -> {peak.max:.0f}",
        f"(c) {kind}: worker wrote (spool)": f"{(io(server.pid, 'wchar') - written) / MB:.1f} MB",
    }


@contextmanager
def valkey() -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from authapi.embedded import server_binary

    port = free_port()
    process = subprocess.Popen(
        [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


Phase = Callable[[Server], dict[str, str]]


def main() -> None:
    flags = documented_flags()
    launches: list[tuple[str, str, list[str], list[Phase]]] = [
        ("before", "project.asgi:django_application", [], [huge_headers, slowloris]),
        ("guard only", "project.asgi:application", [], [huge_headers]),
        ("after", "project.asgi:application", flags, [huge_headers, slowloris]),
    ]
    body_phases: list[Phase] = [
        lambda s: big_body(s, chunked=False),
        lambda s: big_body(s, chunked=True),
    ]
    data = Path(tempfile.mkdtemp(prefix="authapi-hostile-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHAPI_", "DJANGO_"))}
    env.update(
        AUTHAPI_DATA_DIR=str(data),
        DATABASE_URL=f"sqlite:///{data / 'db.sqlite3'}",
        DJANGO_SECRET_KEY="bench-secret-" + "x" * 50,
        DJANGO_SETTINGS_MODULE="project.settings",
        TMPDIR=str(data),
    )
    columns: dict[str, dict[str, str]] = {}
    began = time.monotonic()
    with valkey() as url:
        env["REDIS_URL"] = url
        for name, app, launch_flags, phases in launches:
            rows: dict[str, str] = {}
            for phase in [*phases, *body_phases]:
                server = Server(app, launch_flags, env)
                try:
                    rows.update(phase(server))
                    if not server.alive():
                        rows["worker died"] = "yes"
                finally:
                    server.stop()
            columns[name] = rows
            print(f"{name} done at {time.monotonic() - began:.0f} s", file=sys.stderr)
    labels = [label for rows in columns.values() for label in rows]
    labels = list(dict.fromkeys(labels))
    width = max(map(len, labels)) + 2
    print("before:     uvicorn project.asgi:django_application (Django's handler, defaults)")
    print("guard only: uvicorn project.asgi:application (defaults: httptools)")
    print(f"after:      uvicorn project.asgi:application {' '.join(flags)}")
    print()
    print("".ljust(width) + "".join(name.ljust(26) for name in columns))
    for label in labels:
        cells = [columns[name].get(label, "= before (not run)").ljust(26) for name in columns]
        print(label.ljust(width) + "".join(cells))
    print(f"\ntotal {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
