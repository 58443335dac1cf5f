"""Helpers more than one test module needs."""

from __future__ import annotations

import os
from pathlib import Path


def store_pids(data_dir: Path) -> list[int]:
    """Running (not zombie) valkey-servers working in ``data_dir``: they chdir to --dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe, cwd = os.readlink(proc / "exe"), os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if exe.endswith("valkey-server") and Path(cwd) == data_dir.resolve() and state != "Z":
            found.append(int(proc.name))
    return found
