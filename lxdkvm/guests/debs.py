"""Debian packages for guests, from this machine's apt configuration: what a metapackage depends on,
candidate versions, `apt-get download` into a cache folder, `dpkg-deb -x`.

Only Debian's archive is reached, and only when the package lists or a .deb are missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import LxdkvmError


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise LxdkvmError(f"{command[0]} is missing: guests are built from Debian packages with apt") from exc


def _update() -> None:
    proc = _run(["apt-get", "update", "-q"])
    if proc.returncode != 0:
        raise LxdkvmError(f"apt-get update failed: {proc.stderr.strip()[-500:]}")


def _cache_field(command: list[str], field: str) -> str:
    """The first 'FIELD: value' line of an apt-cache command, updating the package lists once if needed."""
    for attempt in range(2):
        out = _run(command).stdout
        for line in out.splitlines():
            if line.strip().startswith(f"{field}:"):
                value = line.split(":", 1)[1].strip()
                if value and value != "(none)":
                    return value
        if attempt == 0:
            _update()
    raise LxdkvmError(f"apt knows no {field.lower()} for `{' '.join(command)}`: is Debian's archive configured?")


def depends_of(metapackage: str) -> str:
    """The package a metapackage depends on first (linux-image-cloud-amd64 → linux-image-6.1.0-N-cloud-amd64)."""
    return _cache_field(["apt-cache", "depends", metapackage], "Depends")


def candidate_version(package: str) -> str:
    return _cache_field(["apt-cache", "policy", package], "Candidate")


def download(package: str, into: Path) -> Path:
    """The package's candidate .deb in INTO, downloaded when it is not there yet."""
    into.mkdir(parents=True, exist_ok=True)
    version = candidate_version(package).replace(":", "%3a")  # apt-get download's file name for an epoch

    def matching() -> list[Path]:
        return sorted(into.glob(f"{package}_{version}_*.deb"))

    if matching():
        return matching()[-1]
    proc = _run(["apt-get", "download", package], cwd=into)
    if proc.returncode != 0:
        _update()
        proc = _run(["apt-get", "download", package], cwd=into)
    if proc.returncode != 0 or not matching():
        raise LxdkvmError(f"apt-get download {package} failed: {proc.stderr.strip()[-500:]}")
    return matching()[-1]


def extract(deb: Path, into: Path) -> None:
    proc = _run(["dpkg-deb", "-x", str(deb), str(into)])
    if proc.returncode != 0:
        raise LxdkvmError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-500:]}")
