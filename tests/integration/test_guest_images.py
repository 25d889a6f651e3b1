"""Guests from imported disk images, against the real qemu-img, LXD, libvirt and QEMU.

The store: what `lxdkvm guest-image import` accepts (raw or qcow2, standalone) and refuses (a backing
file, an external data file, other formats), and that lab files name images, never paths.

A lab: two appliances a stranger might hand over (an MBR disk with SYSLINUX, a kernel and an initramfs,
configured by their own boot config, with no kernel or command line from lxdkvm) boot through the
firmware in two hosts; one says it is up on its console (`ready: {console: ...}`) and has a static
address on an isolated network, the other only runs and takes a DHCP lease on a NAT network. `verify`
passes, a second `up` is a no-op, one migrates live onto the other host's copy of the same image, and
`down` leaves LXD as it was."""

import json
import subprocess

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.guests import domain, store, tiny

from .guest_artifacts import bootable_disk
from .test_labs import lxd_snapshot, lxdkvm, on

pytestmark = pytest.mark.integration


@pytest.fixture
def state(tmp_path, monkeypatch, lxd):  # lxd: its setup installs qemu-utils on a fresh machine
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def info(path):
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)


def test_a_raw_file_is_kept_as_a_standalone_qcow2(tmp_path, state):
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\xeb\x3c" + b"x" * 510 + b"data" * 1000)
    raw.write_bytes(raw.read_bytes().ljust(3 * 2**20, b"\0"))
    stored = store.import_file(raw, "appliance")
    assert stored.virtual_mib == 3 and stored.source_format == "raw"
    kept = store.path("appliance")
    assert info(kept)["format"] == "qcow2" and "backing-filename" not in info(kept)
    assert oct(store.root().stat().st_mode & 0o777) == "0o700"
    assert store.names() == {"appliance"} and store.get("appliance").sha256 == stored.sha256
    with pytest.raises(LxdkvmError, match="already a guest image appliance"):
        store.import_file(raw, "appliance")
    assert store.import_file(raw, "appliance", force=True).sha256 == stored.sha256
    assert store.remove("appliance") and store.names() == frozenset()


def test_a_backing_file_is_refused_and_nothing_is_kept(tmp_path, state):
    qemu_img("create", "-f", "qcow2", str(tmp_path / "base.qcow2"), "8M")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "base.qcow2"), str(tmp_path / "top.qcow2"))
    with pytest.raises(LxdkvmError, match="backing file"):
        store.import_file(tmp_path / "top.qcow2", "top")
    assert store.names() == frozenset()


def test_an_external_data_file_is_refused(tmp_path, state):
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={tmp_path / 'secret.raw'}", str(tmp_path / "meta.qcow2"), "8M")
    with pytest.raises(LxdkvmError, match="another file"):
        store.import_file(tmp_path / "meta.qcow2", "meta")


def test_other_formats_are_refused(tmp_path, state):
    qemu_img("create", "-f", "vmdk", str(tmp_path / "d.vmdk"), "8M")
    with pytest.raises(LxdkvmError, match="format 'vmdk' is not accepted"):
        store.import_file(tmp_path / "d.vmdk", "d")


def test_a_qcow2_claimed_as_raw_is_taken_as_raw_bytes(tmp_path, state):
    """--format raw on a qcow2 with a backing file: its header is data, QEMU never follows the backing file."""
    qemu_img("create", "-f", "qcow2", str(tmp_path / "base.qcow2"), "8M")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "base.qcow2"), str(tmp_path / "top.qcow2"))
    stored = store.import_file(tmp_path / "top.qcow2", "as-raw", fmt="raw")
    assert stored.source_format == "raw" and "backing-filename" not in info(store.path("as-raw"))


@pytest.mark.parametrize("name", ["../x", "/etc/shadow", "A", "", "x" * 64, "a/b"])
def test_names_are_names_not_paths(name, state):
    with pytest.raises(LxdkvmError, match="invalid guest image name"):
        store.path(name)


def test_not_a_file(tmp_path, state):
    with pytest.raises(LxdkvmError, match="not a regular file"):
        store.import_file(tmp_path, "dir")


# ------------------------------------------------------------------------------------------ a lab
LAB_NAME, PROJECT = "imported", "lxdkvm-imported"
LAB = """name: imported
networks:
  - {name: mgmt, subnet: 10.216.10.0/24}
  - {name: data, subnet: 10.216.20.0/24, mode: isolated}
defaults:
  limits: {cpu: 1, memory: 1GiB}
hosts:
  - name: app-host-[1-2]
    networks: [mgmt, {network: data, ipv4: 10.216.20.11}]
guests:
  - name: appliance-a
    host: app-host-1
    accel: tcg
    disk: {file: test-appliance-a}
    networks: [{network: data, ipv4: 10.216.20.51}]
    ready: {console: "LXDKVM-GUEST-BOOTED name=appliance-a", timeout: 120}
  - name: appliance-b
    host: app-host-2
    accel: tcg
    disk: {file: test-appliance-b, size: 64MiB}
    networks: [mgmt]
"""


@pytest.fixture(scope="module")
def appliance_lab(lxd, tmp_path_factory):
    folder = tmp_path_factory.mktemp("imported")
    built = tiny.build()
    base = "console=ttyS0,115200 panic=-1"
    images = {"test-appliance-a": f"{base} lxdkvm.name=appliance-a lxdkvm.net="
                                  f"{domain.mac_for(LAB_NAME, 'appliance-a', 0)},10.216.20.51/24,",
              "test-appliance-b": f"{base} lxdkvm.name=appliance-b lxdkvm.net="
                                  f"{domain.mac_for(LAB_NAME, 'appliance-b', 0)},dhcp"}
    before = lxd_snapshot()
    lxdkvm("down", LAB_NAME, ok=False)
    for name, append in images.items():
        disk = bootable_disk(folder / f"{name}.raw", built.kernel, built.initrd, append)
        lxdkvm("guest-image", "import", str(disk), "--name", name, "--force")
    (folder / "imported.yaml").write_text(LAB)
    try:
        yield {"path": folder / "imported.yaml", "up": lxdkvm("up", str(folder / "imported.yaml"), timeout=600),
               "before": before}
    finally:
        lxdkvm("down", LAB_NAME, ok=False, timeout=300)
        for name in images:
            lxdkvm("guest-image", "remove", name, ok=False)
    assert lxd_snapshot() == before, "down left something behind"


def test_imported_images_boot_through_their_own_bootloader(appliance_lab):
    assert "lab imported is up: 2 hosts and 2 guests ready" in appliance_lab["up"].stdout
    progress = appliance_lab["up"].stderr
    assert "appliance-a: console text: ok" in progress and "appliance-b: running: ok" in progress
    log = on(PROJECT, "app-host-1", "cat", "/var/log/libvirt/qemu/appliance-a-serial.log").stdout
    assert log.index("SYSLINUX") < log.index("Linux version") < log.index("LXDKVM-GUEST-BOOTED name=appliance-a")
    xml = on(PROJECT, "app-host-1", "virsh", "dumpxml", "appliance-a").stdout
    assert "<kernel>" not in xml and "<boot dev='hd'/>" in xml  # the firmware boots the disk, not lxdkvm
    disk = json.loads(on(PROJECT, "app-host-2", "qemu-img", "info", "-U", "--output=json",
                         "/var/lib/lxdkvm/guests/appliance-b/disk.qcow2").stdout)
    assert disk["backing-filename"].startswith("/var/lib/lxdkvm/files/") and disk["virtual-size"] == 64 * 2**20
    status = json.loads(lxdkvm("status", LAB_NAME, "--json").stdout)
    rows = {g["name"]: g for h in status["hosts"] for g in h["guests"]}
    assert rows["appliance-a"]["addresses"] == {"data": ["10.216.20.51/24"]}
    lease = rows["appliance-b"]["addresses"]["mgmt"][0]  # from LXD's dnsmasq, in the DHCP half
    assert lease.startswith("10.216.10.") and int(lease.split(".")[3].split("/")[0]) >= 128
    assert on(PROJECT, "app-host-1", "ping", "-c", "1", "-W", "2", lease.split("/")[0]).returncode == 0


def test_verify_passes_and_a_second_up_changes_nothing(appliance_lab):
    report = json.loads(lxdkvm("verify", LAB_NAME, "--json").stdout)
    assert report["summary"]["FAIL"] == 0, [c for c in report["checks"] if c["result"] == "FAIL"]
    booted = next(c for c in report["checks"] if c["scope"] == "guest appliance-b" and c["name"] == "booted")
    assert "imported image test-appliance-b" in booted["evidence"]
    again = lxdkvm("up", str(appliance_lab["path"]), timeout=300)
    assert "nothing to do" in again.stdout + again.stderr


def test_an_imported_guest_migrates_onto_the_other_hosts_copy(appliance_lab):
    result = json.loads(lxdkvm("migrate", LAB_NAME, "appliance-a", "--to", "app-host-2", "--json",
                               timeout=300).stdout)
    assert result["same_boot"] is True and result["address_answers"] and result["disk_copied"]
    assert result["running"]
    listing = on(PROJECT, "app-host-2", "virsh", "-q", "list").stdout
    assert "appliance-a" in listing and "appliance-a" not in on(PROJECT, "app-host-1", "virsh", "-q", "list").stdout


def test_a_lab_file_cannot_name_an_image_that_was_not_imported(appliance_lab, tmp_path):
    lab = tmp_path / "stranger.yaml"
    text = LAB.replace("name: imported", "name: stranger").replace("10.216.", "10.217.") \
        .replace("test-appliance-b", "etc-shadow")
    lab.write_text(text)
    line = text.splitlines().index("    disk: {file: etc-shadow, size: 64MiB}") + 1
    before = lxd_snapshot()
    result = lxdkvm("up", str(lab), ok=False, timeout=60)
    assert result.returncode == 2 and "no imported guest image 'etc-shadow'" in result.stderr
    assert "1 problem(s)" in result.stderr
    assert f"{lab}:{line}: guests[1].disk.file" in result.stderr and lxd_snapshot() == before
