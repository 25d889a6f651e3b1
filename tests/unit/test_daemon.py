"""Which daemon lxdkvm talks to (LXD or Incus), and finding bookworm-backports in apt's sources."""

import ipaddress

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.lxd import daemon, incussetup, setup
from lxdkvm.machine import hostcaps
from lxdkvm.settings import Settings


@pytest.fixture
def present(monkeypatch):
    """Pretend which daemons are installed."""
    def set_present(lxd: bool, incus: bool) -> None:
        monkeypatch.setattr(daemon, "lxd_present", lambda: lxd)
        monkeypatch.setattr(daemon, "incus_present", lambda: incus)
    return set_present


def test_lxd_is_the_default_where_it_is_installed_even_beside_incus(present):
    present(lxd=True, incus=True)
    chosen = daemon.selected(Settings.from_env({}))
    assert (chosen.kind, chosen.name, chosen.client) == ("lxd", "LXD", "lxc")
    assert chosen.socket in daemon.LXD_SOCKETS
    assert "default" in chosen.reason


def test_incus_when_only_incus_is_installed(present):
    present(lxd=False, incus=True)
    chosen = daemon.selected(Settings.from_env({}))
    assert (chosen.kind, chosen.socket, chosen.client) == ("incus", "/var/lib/incus/unix.socket", "incus")
    assert chosen.reason == "only Incus is installed"


def test_neither_installed_means_lxd(present):
    present(lxd=False, incus=False)
    assert daemon.selected(Settings.from_env({})).kind == "lxd"


def test_the_setting_wins_over_detection(present):
    present(lxd=True, incus=False)
    chosen = daemon.selected(Settings.from_env({"LXDKVM_DAEMON": "Incus"}))
    assert (chosen.kind, chosen.reason) == ("incus", "LXDKVM_DAEMON=incus")
    assert daemon.selected(Settings.from_env({"LXDKVM_DAEMON": "incus", "INCUS_DIR": "/srv/incus"})).socket == "/srv/incus/unix.socket"
    present(lxd=False, incus=True)
    assert daemon.selected(Settings.from_env({"LXDKVM_DAEMON": "lxd"})).kind == "lxd"


def test_lxd_dir_keeps_working(present):
    present(lxd=True, incus=True)
    chosen = daemon.selected(Settings.from_env({"LXD_DIR": "/tmp/sandbox-lxd"}))
    assert (chosen.kind, chosen.socket) == ("lxd", "/tmp/sandbox-lxd/unix.socket")
    assert daemon.selected(Settings.from_env({"LXD_DIR": "/var/lib/incus"})).kind == "incus"  # how Incus was first reached
    # LXDKVM_DAEMON=incus names Incus whatever LXD_DIR says (a shell may export LXD_DIR for lxc)
    assert daemon.selected(Settings.from_env({"LXD_DIR": "/tmp/sandbox-lxd", "LXDKVM_DAEMON": "incus"})).socket == \
        "/var/lib/incus/unix.socket"


def test_an_unknown_daemon_is_refused_with_the_choices():
    with pytest.raises(LxdkvmError, match=r"LXDKVM_DAEMON='docker' .* use lxd or incus"):
        daemon.selected(Settings.from_env({"LXDKVM_DAEMON": "docker"}))


def _root(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_backports_suite_found_in_deb822_and_one_line_sources(tmp_path):
    plain = _root(tmp_path / "a", {"etc/apt/sources.list.d/debian.sources":
                                   "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"})
    assert not incussetup.has_suite("bookworm-backports", plain)
    deb822 = _root(tmp_path / "b", {"etc/apt/sources.list.d/x.sources": "Suites: bookworm bookworm-backports\n"})
    assert incussetup.has_suite("bookworm-backports", deb822)
    one_line = _root(tmp_path / "c", {"etc/apt/sources.list": "deb http://deb.debian.org/debian bookworm-backports main\n"})
    assert incussetup.has_suite("bookworm-backports", one_line)
    commented = _root(tmp_path / "d", {"etc/apt/sources.list": "# deb http://deb.debian.org/debian bookworm-backports main\n"})
    assert not incussetup.has_suite("bookworm-backports", commented)


def test_codename_from_os_release(tmp_path):
    root = _root(tmp_path, {"etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n'})
    assert incussetup.codename(root) == "bookworm"


IP_ADDR = r"""\
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\       valid_lft forever preferred_lft forever
5: lxdkvmbr0    inet 10.87.0.1/24 scope global lxdkvmbr0\       valid_lft forever preferred_lft forever
"""


def test_a_stopped_daemons_bridge_still_takes_its_subnet():
    """LXD stopped: lxdkvmbr0 is down, has no route, but keeps 10.87.0.1/24 — Incus must not take it."""
    taken = [net for net, _dev in hostcaps.parse_interface_subnets(IP_ADDR)]
    assert ("lxdkvmbr0" in [dev for _net, dev in hostcaps.parse_interface_subnets(IP_ADDR)])
    assert setup.free_subnet(taken, start=87) == ipaddress.IPv4Network("10.88.0.0/24")
    assert setup.free_subnet(taken + [ipaddress.IPv4Network("10.88.0.0/16")], start=88) == \
        ipaddress.IPv4Network("10.89.0.0/24")
