"""Ansible's community.libvirt modules against a real lab, as docs/tools.md shows it: the
commands of its "Try it" block, read from the doc and run as they are written, in order (up, provision
twice, virsh list, down). examples/ansible-libvirt/site.yml makes a libvirt network and a tiny guest with
`virt_net` and `virt`, as an unprivileged user reached with become_user without pipelining.

What the playbook did is observed with `lxc exec … virsh` and the host's own journal, never through the
playbook's own claims; the recap's numbers are parsed from whole lines. The lab's state is in a temporary
directory (LXDKVM_STATE_DIR); the lab is taken down also when a test fails, and LXD is left as it was."""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .test_labs import lxc_json, lxd_snapshot, on

pytestmark = pytest.mark.integration
REPO = Path(__file__).parent.parent.parent
DOC = REPO / "docs" / "tools.md"
EXAMPLE = REPO / "examples" / "ansible-libvirt"
LAB, PROJECT, HOST = "ansvirt-libvirt", "lxdkvm-ansvirt-libvirt", "kvm-1"
NETWORK, BRIDGE, GUEST, MAC, ADDRESS = "tiny-net", "tinybr0", "tiny-1", "52:54:00:a5:00:01", "10.233.99.10"
OPERATOR = "libvirt-operator"
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                        r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+"
                        r"rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)\s*$")
TIMINGS: list[tuple[str, float]] = []  # (command, seconds), in order: the two provisions are one line


def doc_commands() -> list[str]:
    """The lines of the first ```sh block under "### Try it" of the page's community.libvirt section."""
    text = DOC.read_text().split("\n## Ansible's community.libvirt\n", 1)[1].split("\n## ", 1)[0]
    section = text.split("\n### Try it\n", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block, "docs/tools.md has no ```sh block under ### Try it of ## Ansible's community.libvirt"
    return [line for line in block.group(1).splitlines() if line.strip()]


COMMANDS = doc_commands()


def run_doc_line(line: str, ok: bool = True) -> subprocess.CompletedProcess:
    """A line of the doc (or another lxdkvm command), run from the repository's top folder with this environment's lxdkvm."""
    words = shlex.split(line)
    assert words[0] == "lxdkvm", line  # nothing else in the block: each line runs as the reader's would
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lxdkvm", *words[1:]], check=False, capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    TIMINGS.append((line, round(time.monotonic() - start, 1)))
    print(f"$ {line} → {proc.returncode} in {TIMINGS[-1][1]}s\n{proc.stdout}{proc.stderr}", flush=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's lines, each one whole, as numbers; exactly one recap."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("PLAY RECAP ")]
    assert len(starts) == 1, output[-2000:]
    found = {}
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            break
        match = RECAP_LINE.match(line)
        assert match, f"not a recap line: {line!r}"
        found[match["host"]] = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
    return found


def host(*command: str) -> str:
    proc = on(PROJECT, HOST, *command)
    assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def net_info() -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                                                 host("virsh", "-q", "net-info", NETWORK).splitlines())}


def guest_pid() -> str:
    return host("cat", f"/run/libvirt/qemu/{GUEST}.pid").strip()


def test_the_doc_block_is_up_provision_twice_virsh_and_down():
    assert COMMANDS == [
        "lxdkvm up examples/ansible-libvirt/lab.yaml",
        f"lxdkvm provision {LAB} --playbook examples/ansible-libvirt/site.yml",
        f"lxdkvm provision {LAB} --playbook examples/ansible-libvirt/site.yml",
        f"lxdkvm exec --lab {LAB} {HOST} -- virsh list --all",
        f"lxdkvm down {LAB}",
    ]
    assert f"name: {LAB}" in (EXAMPLE / "lab.yaml").read_text()


@pytest.fixture(scope="module")
def lab(lxd, baked_image, tmp_path_factory):
    """The doc's lab, up by the doc's first line, with its state in a temporary directory; taken down by
    the doc's last line in its test, and here in any case: nothing of the lab is left in LXD afterwards
    (other people's labs come and go on the same daemon meanwhile, so only the lab's own are compared)."""
    state = tmp_path_factory.mktemp("state")
    saved = os.environ.get("LXDKVM_STATE_DIR")
    os.environ["LXDKVM_STATE_DIR"] = str(state)
    assert PROJECT not in lxd_snapshot()["projects"]
    bridges: list[str] = []
    try:
        run_doc_line(COMMANDS[0])
        status = json.loads(run_doc_line(f"lxdkvm status {LAB} --json").stdout)
        bridges += [n["bridge"] for n in status["networks"]]
        assert len(bridges) == 1 and bridges[0] in lxd_snapshot()["networks"]
        yield {}
    finally:
        run_doc_line(f"lxdkvm down {LAB}", ok=False)
        if saved is None:
            os.environ.pop("LXDKVM_STATE_DIR", None)
        else:
            os.environ["LXDKVM_STATE_DIR"] = saved
        print(f"community.libvirt timings: {TIMINGS}", flush=True)
    after = lxd_snapshot()
    assert PROJECT not in after["projects"] and not set(bridges) & set(after["networks"])
    assert not [i for i in after["instances"] + after["profiles"] if i.startswith(f"{PROJECT}/")]


def test_the_first_run_makes_the_network_and_the_guest(lab):
    assert on(PROJECT, HOST, "virsh", "-q", "net-info", NETWORK).returncode != 0  # none before the run
    first = run_doc_line(COMMANDS[1])
    numbers = recap(first.stdout)
    assert set(numbers) == {HOST}
    # the operator, libvirt's dnsmasq directory, define + active + autostart, define + running
    assert numbers[HOST] == {"ok": 13, "changed": 7, "unreachable": 0, "failed": 0, "skipped": 0,
                             "rescued": 0, "ignored": 0}, first.stdout[-3000:]


def test_the_network_is_defined_active_and_autostarted(lab):
    info = net_info()
    assert (info["Active"], info["Persistent"], info["Autostart"], info["Bridge"]) == ("yes", "yes", "yes", BRIDGE)
    assert "10.233.99.1/24" in host("ip", "-o", "-4", "addr", "show", "dev", BRIDGE)


def test_the_guest_is_defined_from_its_xml_and_running(lab):
    from lxdkvm.outputs import inventory

    assert host("virsh", "-q", "domstate", GUEST).strip() == "running"
    assert host("virsh", "-q", "dominfo", GUEST).count("Persistent:     yes") == 1
    domain = ET.fromstring(host("virsh", "dumpxml", "--inactive", GUEST))
    assert domain.get("type") == inventory.domain_type()  # lxdkvm_libvirt_domain_type reached the XML
    assert domain.findtext("os/kernel", "").startswith("/var/lib/lxdkvm/tiny/")
    (nic,) = domain.findall("devices/interface")
    assert (nic.get("type"), nic.find("source").get("network"), nic.find("mac").get("address")) == \
        ("network", NETWORK, MAC)
    # QEMU runs, as libvirt-qemu, and the guest booted and answers on the libvirt network
    assert host("ps", "-o", "user=", "-p", guest_pid()).strip() == "libvirt-qemu"
    log = host("cat", f"/var/log/libvirt/qemu/{GUEST}-serial.log")
    assert re.search(rf"^LXDKVM-GUEST-BOOTED name={GUEST} boot_id=\S+ addrs=eth0={ADDRESS}/24\r?$", log, re.MULTILINE)
    assert on(PROJECT, HOST, "ping", "-c", "1", "-W", "2", ADDRESS).returncode == 0


def test_the_libvirt_modules_ran_as_the_unprivileged_operator_from_files(lab):
    """become_user without pipelining: sudo (in the host's journal) ran each module's file in /var/tmp as
    the operator; pipelining would have fed python3 on its standard input instead."""
    assert host("id", "-u", OPERATOR).strip() != "0"
    assert set(host("id", "-nG", OPERATOR).split()) == {OPERATOR, "libvirt"}  # libvirt: polkit lets it in
    journal = host("journalctl", "-q", "--no-pager", "_COMM=sudo")
    ran = re.findall(rf"\blab : .*; USER={OPERATOR} ; COMMAND=/bin/sh -c 'echo BECOME-SUCCESS-[a-z]+ ; "
                     r"/usr/bin/python3 /var/tmp/ansible-tmp-[0-9.-]+/AnsiballZ_(virt|virt_net)\.py'$",
                     journal, re.MULTILINE)
    assert ran.count("virt_net") == 3 and ran.count("virt") == 3, ran  # 3 virt_net and 3 virt tasks


def test_a_second_run_changes_nothing(lab):
    uuid, pid = host("virsh", "-q", "domuuid", GUEST).strip(), guest_pid()
    second = run_doc_line(COMMANDS[2])
    numbers = recap(second.stdout)
    assert set(numbers) == {HOST}
    assert numbers[HOST]["changed"] == 0 and numbers[HOST]["failed"] == 0, second.stdout[-3000:]
    assert numbers[HOST]["ok"] == 13
    # the same domain, the same QEMU: nothing was redefined under a new UUID or restarted
    assert (host("virsh", "-q", "domuuid", GUEST).strip(), guest_pid()) == (uuid, pid)
    assert net_info()["Active"] == "yes"


def test_virsh_through_lxdkvm_lists_the_guest_running(lab):
    listed = run_doc_line(COMMANDS[3]).stdout
    states = {fields[1]: " ".join(fields[2:]) for fields in (line.split() for line in listed.splitlines())
              if len(fields) >= 3 and fields[0].isdigit()}
    assert states == {GUEST: "running", "vm-1": "running"}


def test_the_example_passes_ansible_lint_production():
    lint = Path(sys.executable).parent / "ansible-lint"
    proc = subprocess.run([str(lint), "--nocolor", "--profile", "production", "site.yml"], check=False,
                          capture_output=True, text=True, timeout=600, cwd=EXAMPLE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Passed: 0 failure(s), 0 warning(s)" in out


def test_down_removes_the_lab(lab):
    run_doc_line(COMMANDS[4])
    assert PROJECT not in [p["name"] for p in lxc_json("project", "list")]
