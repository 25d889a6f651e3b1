"""Hostile lab files against the real CLI and a real LXD: `lxdkvm up FILE` refuses every one (exit 2, the
file and line, no traceback) and LXD's whole state is the same afterwards; `down`/`status` with a hostile
file refuse it too; each --allow-* flag lets `lxdkvm plan` (which creates nothing) accept its own class."""

import ipaddress
import os
from pathlib import Path

import pytest

from lxdkvm.labfile import confine
from lxdkvm.machine import hostcaps

from .test_labs import lxd_snapshot, lxdkvm

pytestmark = pytest.mark.integration
HOSTILE = Path(__file__).parent.parent / "labs" / "hostile"
FILES = sorted(HOSTILE.glob("[0-9][0-9]*-*.yaml"))  # 01- … 124-
GOLDEN_BRIDGE = "10.87.0.0/24"  # lxdkvmbr0's subnet where the goldens are written (tests/unit/test_labs.py)


def machine_snapshot() -> dict:
    """What lxdkvm keeps on this machine outside the daemon: its state and run directories (every path
    in them) and the nftables tables."""
    import subprocess

    from lxdkvm import paths

    def tree(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []

    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return {"state": tree(paths.state_root()), "run": tree(paths.run_dir()), "nft": sorted(tables.splitlines())}


def management_subnet() -> str:
    return str(next(net for net, device in hostcaps.routes() if device == "lxdkvmbr0"))


def on_this_machine(path: Path, tmp_path: Path) -> Path:
    """The file as it is refused here: 28 names the management bridge's subnet of this machine."""
    if GOLDEN_BRIDGE.encode() not in path.read_bytes():
        return path
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace(GOLDEN_BRIDGE, management_subnet()))
    return copy


def refused(*args: str) -> str:
    result = lxdkvm(*args, ok=False, timeout=60)
    assert result.returncode == 2, args
    assert "Traceback" not in result.stderr and "nothing was changed" in result.stderr, args
    return result.stderr


def test_hostile_lab_files_are_refused_by_up_and_create_nothing(lxd, tmp_path):
    before, machine = lxd_snapshot(), machine_snapshot()
    assert len(FILES) >= 100
    for path in FILES:
        file = on_this_machine(path, tmp_path)
        stderr = refused("up", str(file))
        first = path.with_suffix(".expected").read_text().splitlines()[0]
        line = first.split(": ", 1)[0].rsplit(":", 1)[1]  # the line of the first problem
        assert f"{file}:{line}: " in stderr, path.name
    assert lxd_snapshot() == before
    assert machine_snapshot() == machine


def test_hostile_paths_are_refused_by_up_and_create_nothing(lxd, tmp_path):
    before, machine = lxd_snapshot(), machine_snapshot()
    big = tmp_path / "big.yaml"
    with open(big, "wb") as out:
        out.truncate(50 * 10**6)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    (tmp_path / "dir.yaml").mkdir()
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000)
    for path, says in ((big, "more than a lab file may be"), ("/dev/zero", "more than a lab file may be"),
                       (fifo, "the lab file is empty"), (tmp_path / "dir.yaml", "is a directory"),
                       (deep, "nests deeper than 32 levels")):
        assert says in refused("up", str(path)), path
    assert lxd_snapshot() == before
    assert machine_snapshot() == machine


@pytest.mark.parametrize("stem", ["40-billion-laughs", "47-bidi-and-escape-in-names",
                                  "48-shell-metacharacters-in-names", "32-binary-with-nul"])
def test_down_and_status_refuse_a_hostile_file(lxd, stem):
    before = lxd_snapshot()
    for command in ("down", "status"):
        refused(command, str(HOSTILE / f"{stem}.yaml"))
    assert lxd_snapshot() == before


def free_cgnat_subnet() -> str:
    routes = [net for net, _ in hostcaps.routes()]
    return str(next(net for net in confine.CGNAT.subnets(new_prefix=24)
                    if not any(net.overlaps(route) for route in routes)))


@pytest.mark.parametrize(("flag", "stem"), [("--allow-unconfined", "01-privileged-yes-in-defaults"),
                                            ("--allow-unconfined", "08-kernel-modules"),
                                            ("--allow-host-devices", "11-disk-host-path"),
                                            ("--allow-host-devices", "17-proxy-to-lxd-socket"),
                                            ("--allow-cgnat", "27-cgnat-subnet")])
def test_an_allow_flag_lets_plan_accept_its_own_class(lxd, tmp_path, flag, stem):
    path = tmp_path / f"{stem}.yaml"
    subnet = ipaddress.IPv4Network("100.64.0.0/16")
    path.write_text((HOSTILE / f"{stem}.yaml").read_text().replace(str(subnet), free_cgnat_subnet()))
    before = lxd_snapshot()
    refused("plan", str(path))
    other = "--allow-cgnat" if flag != "--allow-cgnat" else "--allow-unconfined"
    refused("plan", other, str(path))  # another class's flag does not help
    accepted = lxdkvm("plan", flag, str(path), timeout=120)
    assert "create" in accepted.stdout and "hostile" in accepted.stdout
    assert lxd_snapshot() == before
