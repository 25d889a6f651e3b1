"""A stranger's lab file against the real `lxdkvm up`, on LXD and on Incus: the attacks that worked this
week are refused before anything exists, and what they tried to do did not happen.

- a line break in a `linux.sysctl.*` value, and in an `environment.*` value, adding an `lxc.hook.pre-start`
  that would run as root on this machine: exit 2 at the value's line, and the hook's file is not made;
- LXD's legacy spellings of the seccomp keys (`security.syscalls.blacklist_default` …): refused as keys
  lxdkvm does not know, with or without `--allow-unconfined`;
- a profile name with URL syntax (`default?project=default`): refused as a name; the default project's
  default profile is unchanged;
and in each case the daemon's state, lxdkvm's state and run directories and the nftables tables are as
before (the corpus test in tests/integration/test_hostile_labs.py does this for every hostile file)."""

import os
import subprocess
import sys
import uuid

import pytest

from ..integration.test_hostile_labs import machine_snapshot
from ..integration.test_incus import incus_json, incus_query, incus_ready  # noqa: F401  (fixture)
from ..integration.test_labs import lxd_snapshot

pytestmark = pytest.mark.integration
HOOK = """\
name: hostile-hook
hosts:
  - name: kvm-1
    config:
      {key}: "1\\nlxc.hook.pre-start = /bin/sh -c 'touch {marker}'"
"""
LEGACY = """\
name: hostile-seccomp
hosts:
  - name: kvm-1
    config:
      {key}: "false"
"""
PROFILE = """\
name: hostile-profile
profiles:
  - name: "default?project=default"
    config: {user.pwned: "yes"}
hosts:
  - name: kvm-1
    profiles: ["default?project=default"]
"""


def up(daemon: str, path, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LXDKVM_DAEMON", "LXD_DIR", "INCUS_DIR")}
    env["LXDKVM_DAEMON"] = daemon
    return subprocess.run([sys.executable, "-m", "lxdkvm", "up", *flags, str(path)], capture_output=True, text=True,
                          timeout=120, env=env)


def lxc_query(path: str) -> dict:
    import json

    return json.loads(subprocess.run(["lxc", "query", path], check=True, capture_output=True, text=True).stdout)


def daemon_state(daemon: str) -> dict:
    return lxd_snapshot() if daemon == "lxd" else lxd_snapshot(incus_json)


@pytest.fixture(params=["lxd", "incus"])
def daemon(request, lxd):
    if request.param == "incus":
        request.getfixturevalue("incus_ready")
    return request.param


@pytest.mark.parametrize("key", ["linux.sysctl.net.ipv4.ip_forward", "environment.PATH"])
def test_a_line_break_in_a_value_is_no_lxc_hook(daemon, key, tmp_path):
    marker = f"/tmp/lxdkvm-pwned-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "hook.yaml"
    path.write_text(HOOK.format(key=key, marker=marker))
    before, machine = daemon_state(daemon), machine_snapshot()
    for flags in ((), ("--allow-unconfined",)):  # no flag makes a line break part of a value
        refused = up(daemon, path, *flags)
        assert refused.returncode == 2, refused.stderr
        assert f"{path}:5: hosts[0].config.{key}" in refused.stderr and "Traceback" not in refused.stderr
    assert not os.path.exists(marker)
    assert daemon_state(daemon) == before and machine_snapshot() == machine


@pytest.mark.parametrize("key", ["security.syscalls.blacklist_default", "security.syscalls.blacklist",
                                 "security.syscalls.whitelist", "security.syscalls.blacklist_compat"])
def test_legacy_seccomp_keys_are_refused(daemon, key, tmp_path):
    path = tmp_path / "seccomp.yaml"
    path.write_text(LEGACY.format(key=key))
    before = daemon_state(daemon)
    for flags in ((), ("--allow-unconfined",)):
        refused = up(daemon, path, *flags)
        assert refused.returncode == 2 and f"hosts[0].config.{key}" in refused.stderr, refused.stderr
    assert daemon_state(daemon) == before


def test_a_profile_name_is_never_a_query(daemon, tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    show = (lambda: lxc_query("/1.0/profiles/default")) if daemon == "lxd" else \
        (lambda: incus_query("/1.0/profiles/default"))
    profile, before = show(), daemon_state(daemon)
    refused = up(daemon, path)
    assert refused.returncode == 2 and "profiles[0].name" in refused.stderr, refused.stderr
    assert show() == profile and daemon_state(daemon) == before
