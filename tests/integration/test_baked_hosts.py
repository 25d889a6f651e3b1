"""Hosts from the baked KVM-host image on the copy-on-write pool: ready without installing anything,
each with its own identity."""

import pytest

from lxdkvm.hosts import profile as profile_mod
from lxdkvm.hosts import readiness
from lxdkvm.images import bake
from lxdkvm.lxd import setup
from lxdkvm.lxd.session import Session
from lxdkvm.machine import hostcaps

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def baked(baked_image):
    return baked_image


@pytest.fixture(scope="module")
def two_hosts(lxd, baked, unique):
    names = [f"lxdkvm-it-baked-{unique}-{i}" for i in (1, 2)]
    profile = f"lxdkvm-it-baked-{unique}"
    spec = profile_mod.for_host(hostcaps.read_host(), kvm_gid=int(baked.properties["lxdkvm.kvm_gid"]),
                                install_packages=False)
    lxd.profiles.apply(profile, profile_mod.parse(profile_mod.render(spec)))
    pool = setup.ensure_hosts_pool(lxd)
    try:
        readiness.launch_many(lxd.instances, names, baked.alias, ["default", profile], pool=pool.name)
        yield names
    finally:
        for name in names:
            lxd.instances.delete(name)
        lxd.profiles.delete(profile)


def out(lxd, name, *command):
    result = lxd.instances.execute(name, list(command))
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def test_baked_image_says_what_it_contains_and_rebake_is_cached(lxd, baked, base_image):
    props = lxd.images.by_alias(bake.DEFAULT_ALIAS)["properties"]
    assert "libvirt-daemon-system=" in props["lxdkvm.contains"]
    assert "qemu-system-x86=" in props["lxdkvm.contains"]
    assert props["lxdkvm.base"] == base_image.fingerprint
    assert bake.bake(Session(), base_image.alias).action == "up to date"


def test_hosts_get_fresh_identity(lxd, two_hosts):
    for what in (["cat", "/etc/machine-id"], ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], ["hostname"]):
        values = {out(lxd, name, *what) for name in two_hosts}
        assert len(values) == 2 and all(values), what
    assert {out(lxd, name, "hostname") for name in two_hosts} == set(two_hosts)


def test_hosts_run_cloud_init_per_instance_but_install_nothing(lxd, two_hosts):
    for name in two_hosts:
        assert "status: done" in out(lxd, name, "cloud-init", "status")
        assert out(lxd, name, "cloud-init", "query", "v1.instance_id") == name
        assert out(lxd, name, "cat", "/var/log/dpkg.log") == ""  # truncated by the bake, nothing since
        assert out(lxd, name, "systemctl", "is-active", "libvirtd.service") == "active"
        probe = out(lxd, name, *readiness.probe_command(readiness.QEMU_USER))
        assert probe.startswith("kvm-probe: OK")


def test_hosts_are_on_the_copy_on_write_pool(lxd, two_hosts):
    pool = setup.ensure_hosts_pool(lxd)
    for name in two_hosts:
        assert lxd.instances.info(name)["expanded_devices"]["root"]["pool"] == pool.name
    assert pool.cow  # btrfs-progs is installed by setup and this kernel has btrfs


def test_cloud_init_runs_in_one_process_and_its_log_reads_in_order(lxd, two_hosts):
    for name in two_hosts:
        assert out(lxd, name, "systemctl", "show", "-p", "UnitFileState", "cloud-final.service") == "UnitFileState=masked"
        # both stages ran, in the one process of cloud-init-local.service, the local stage first
        stages = [line for line in out(lxd, name, "journalctl", "-b", "-o", "cat", "-u", "cloud-init-local.service")
                  .splitlines() if line.startswith("Cloud-init v.") and "running" in line]
        assert [s.split("running ")[1].split(" ")[0] for s in stages] == ["'init-local'", "'modules:final'"], stages
        log = out(lxd, name, "cat", "/var/log/cloud-init-output.log").splitlines()
        running = [line for line in log if line.startswith("Cloud-init v.") and "running" in line]
        assert len(running) == 2 and "'init-local'" in running[0] and "'modules:final'" in running[1], running
        assert log.index(running[0]) < log.index("+----[SHA256]-----+") < log.index(running[1])
