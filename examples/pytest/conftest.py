"""Fixtures of the example suite, as a user would write them on top of lxdkvm's `lxdkvm_lab`."""

import pytest

GUEST = "vm-1"


@pytest.fixture
def lab(lxdkvm_lab):
    """The session's lab (a `lxdkvm.Lab`), checked ready before each test."""
    status = lxdkvm_lab.status()
    assert all(host.ready for host in status.hosts), status.as_json()
    return lxdkvm_lab


def host_of(lab, guest: str) -> str:
    """The host GUEST runs on now (it moves: a kept lab starts where the last run left it)."""
    return next(g.host for g in lab.status().guests if g.name == guest)
