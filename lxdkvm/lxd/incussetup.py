"""Install and start Incus (the community fork of LXD) beside or instead of LXD.

Debian 12 has Incus 6.0 only in `bookworm-backports`; lxdkvm installs just the daemon (`incus-base`) and
the client (`incus-client`), not the `incus` package, which would also pull QEMU 10 from backports and
upgrade the machine's. Where there is no systemd as PID 1, `incusd` is started by hand, as
lxdsetup does with `lxd`. Every step first checks whether it is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import LxdkvmError
from . import daemon

PACKAGES = ["incus-base", "incus-client"]
SOURCE = Path("/etc/apt/sources.list.d/lxdkvm-backports.sources")
SOURCE_TEXT = """\
# added by lxdkvm (`lxdkvm setup --daemon incus`): Incus 6.0 is only in bookworm-backports
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
LOG = Path("/var/log/incus/incusd.log")

Report = Callable[[str], None]


def installed() -> bool:
    return Path(daemon.INCUSD).exists() and bool(shutil.which("incus"))


def codename(root: Path = Path("/")) -> str:
    for line in (root / "etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def has_suite(suite: str, root: Path = Path("/")) -> bool:
    """Whether any apt source (one-line or deb822) names SUITE."""
    apt = root / "etc/apt"
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list")),
             *sorted((apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            if suite in line.split():  # "deb URI SUITE ..." or "Suites: A SUITE"
                return True
    return False


def _apt(command: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LxdkvmError(f"{' '.join(command[:2])} failed: {' | '.join(tail)}\n  Incus could not be installed: "
                          f"check that Debian's archive (and {SOURCE.name}) answers, then run "
                          "`lxdkvm setup --daemon incus` again")


def install(report: Report) -> None:
    """incus-base and incus-client, from bookworm-backports on Debian 12 (the suite is added to apt's
    sources when absent, and that is said)."""
    if installed():
        return
    if os.geteuid() != 0:
        raise LxdkvmError("Incus is not installed and installing it needs root")
    release = codename()
    target: list[str] = []
    if release == "bookworm":
        target = ["-t", "bookworm-backports"]
        if not has_suite("bookworm-backports"):
            SOURCE.write_text(SOURCE_TEXT)
            report(f"added bookworm-backports to apt's sources ({SOURCE}): Debian 12 has Incus only there")
    report(f"installing {' '.join(PACKAGES)}{' from bookworm-backports' if target else ''} (apt; not the "
           "`incus` package, which would upgrade QEMU)")
    _apt(["apt-get", "update", "-q"])
    _apt(["apt-get", "install", "-y", "-q", "--no-install-recommends", *target, *PACKAGES])
    if not installed():
        raise LxdkvmError(f"apt installed {' '.join(PACKAGES)} but {daemon.INCUSD} or `incus` is missing")


def _run(command: list[str], what: str, env: dict[str, str]) -> None:
    proc = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LxdkvmError(f"{what} failed ({' '.join(command[:3])}...): {' | '.join(tail)} (log: {LOG})")


def start(session, report: Report) -> None:
    """Start incusd unless the session's daemon already answers, then wait until it is ready."""
    if session.answers():
        return
    chosen = session.daemon
    env = {**os.environ, "INCUS_DIR": chosen.state_dir}
    env.pop("LXD_DIR", None)
    if Path("/run/systemd/system").is_dir() and chosen.state_dir == daemon.INCUS_DIR:
        report("starting Incus (systemctl start incus)")
        _run(["systemctl", "start", "incus.socket", "incus.service"], "starting Incus", env)
    else:
        # No systemd as PID 1 (containers, sandboxes): run the daemon detached, as its unit would.
        report(f"starting Incus daemon (no systemd; log in {LOG})")
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with open(os.devnull, "rb") as devnull, open(LOG, "ab") as log:
            subprocess.Popen([daemon.INCUSD, "--group", "root", "--logfile", str(LOG)], stdin=devnull,
                             stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env)
    _run(["incus", "admin", "waitready", "--timeout", "60"], "waiting for Incus", env)
