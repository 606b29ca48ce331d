"""Container healthcheck for the qscope Ray images (stdlib only): exit 0 when healthy, 1 otherwise.

    python docker/healthcheck.py head      # the head's GCS answers through the dashboard's job API server
    python docker/healthcheck.py worker    # this container's raylet runs and the head's GCS port accepts connections

The head check asks the endpoint `ray job submit` talks to (port 8265), so "healthy" means jobs can be submitted.
The worker address comes from RAY_HEAD_ADDRESS (default ray-head:6379, the compose service name).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path


def head_ok(url: str = "http://127.0.0.1:8265/api/gcs_healthz", timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def raylet_running(proc: Path = Path("/proc")) -> bool:
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"/raylet" in cmdline.split(b"\0", 1)[0]:
                return True
    return False


def gcs_reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else "head"
    if role == "head":
        return 0 if head_ok() else 1
    if role == "worker":
        address = os.environ.get("RAY_HEAD_ADDRESS", "ray-head:6379")
        return 0 if raylet_running() and gcs_reachable(address) else 1
    print(f"usage: {argv[0]} head|worker", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
