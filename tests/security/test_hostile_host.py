"""A compromised lab host against real LXD and Incus: its virsh lists domains whose names, states, lxdkvm metadata
and boot markers carry `{{ lookup('pipe', 'touch /tmp/lxdkvm-pwned-…') }}`, escape sequences and rich
markup. Every command that reads guests back (status --json, inventory in each format, graph, provision
with verify.yml) must leave the payload out of its output, say a warning naming the host, and never run
it: the marker file does not appear on this machine.

How the host lies: libvirt/list-guests.sh loops over `virsh -q list --all --name` (split on blanks, so
the name payload uses ${IFS} for its space), then asks `virsh -q domstate NAME` and `virsh -q metadata
NAME NS`, and greps the domain's serial log for the boot marker. /usr/bin/virsh in the host is replaced
by a wrapper that adds the fake domains to `list` and answers `domstate`/`metadata` for them from files
in /etc/lxdkvm-hostile; everything else goes to the real virsh."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ..integration.test_incus import incus_ready  # noqa: F401  (fixture)
from ..integration.test_incus import lxdkvm as lxdkvm_on

pytestmark = pytest.mark.integration
LAB, HOST = "itest-hostile", "hh-1"
PROJECT = f"lxdkvm-{LAB}"
LAB_FILE = f"""\
# One host with one tiny guest; the host turns hostile after `up` (tests/security/test_hostile_host.py).
name: {LAB}
networks:
  - {{name: mgmt, subnet: 10.230.10.0/24}}
  - {{name: data, subnet: 10.230.20.0/24, mode: isolated}}
hosts:
  - name: {HOST}
    networks: [mgmt, {{network: data, ipv4: 10.230.20.11}}]
    limits: {{memory: 1GiB}}
guests:
  - name: vm-a
    host: {HOST}
    networks: [{{network: data, ipv4: 10.230.20.51}}]
"""
WRAPPER = """\
#!/bin/sh
# A compromised host's virsh (lxdkvm tests/security/test_hostile_host.py)
H=/etc/lxdkvm-hostile
if [ "$1" = -q ] && [ "$2" = list ]; then
  /usr/bin/virsh.real "$@" | sed '/^$/d'
  cat "$H/names"
  exit 0
fi
if [ "$1" = -q ] && { [ "$2" = domstate ] || [ "$2" = metadata ]; }; then
  n=0
  while IFS= read -r fake; do
    n=$((n + 1))
    if [ "$3" = "$fake" ]; then
      cat "$H/$2.$n"
      exit 0
    fi
  done < "$H/names"
fi
exec /usr/bin/virsh.real "$@"
"""


def spec(**changes) -> str:
    """lxdkvm's metadata as libvirt prints it, claiming the domain is one of the lab's guests."""
    fields = {"v": 1, "lab": LAB, "host": HOST, "tiny": "0123456789abcdef", "accel": "tcg", "vcpus": 1,
              "memory_mib": 64, "disk_mib": 0, "nics": [], **changes}
    return f'<lxdkvm:spec xmlns:lxdkvm="https://lxdkvm.invalid/1">{json.dumps(fields)}</lxdkvm:spec>\n'


def fakes(marker: Path) -> list[tuple[str, str, str]]:
    """(name, what `virsh domstate` prints, what `virsh metadata` prints) of each fake domain."""
    spaced = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    word = f"{{{{lookup('pipe','touch${{IFS}}{marker}')}}}}"  # no blank: the list is split on blanks
    file_image = {"image": "file", "file": "x", "file_key": "0123456789abcdef", "user_data": "0123456789ab"}
    return [
        (word, "running\n", spec()),
        ("evil-state", f"{spaced}\n", spec()),
        ("evil-ansi", "running\x1b[2J\x1b]0;owned\x07[bold]x\n", spec()),
        ("evil-tabs", f"running\t{spec(host=word).strip()}\t\n", spec()),
        ("evil-spec", "running\n", spec(**file_image, nics=[["br-data", "52:54:00:00:00:01", spaced, ""]])),
        ("evil-marker", "running\n", spec()),
    ]


DAEMON = {"name": "lxd"}  # the daemon the module's lab is on (the `hostile` fixture's parameter)


def lxdkvm(*args: str, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return lxdkvm_on(*args, daemon=DAEMON["name"], ok=ok, timeout=timeout)


def client() -> str:
    return "lxc" if DAEMON["name"] == "lxd" else "incus"


def in_host(*command: str, stdin: str | None = None) -> None:
    subprocess.run([client(), "exec", "--project", PROJECT, HOST, "--", *command], input=stdin, text=True,
                   check=True, capture_output=True, timeout=60)


def turn_hostile(marker: Path) -> None:
    domains = fakes(marker)
    in_host("mkdir", "-p", "/etc/lxdkvm-hostile")
    files = {"names": "".join(f"{name}\n" for name, _state, _meta in domains)}
    for n, (_name, state, meta) in enumerate(domains, 1):
        files |= {f"domstate.{n}": state, f"metadata.{n}": meta}
    for name, text in files.items():
        in_host("sh", "-c", 'cat > "$0"', f"/etc/lxdkvm-hostile/{name}", stdin=text)
    boot = f"LXDKVM-GUEST-BOOTED name=evil-marker boot_id={domains[0][0]} addrs=eth0={domains[0][0]}\n"
    in_host("sh", "-c", 'cat > "$0"', "/var/log/libvirt/qemu/evil-marker-serial.log", stdin=boot)
    in_host("sh", "-c", "test -e /usr/bin/virsh.real || mv /usr/bin/virsh /usr/bin/virsh.real")
    in_host("sh", "-c", 'cat > /usr/bin/virsh && chmod 0755 /usr/bin/virsh', stdin=WRAPPER)


@pytest.fixture(scope="module", params=["lxd", "incus"])
def hostile(request, lxd, baked_image, unique, tmp_path_factory):
    """The lab, up on LXD or Incus, its host hostile; the marker file the payload would create; down
    afterwards."""
    if request.param == "incus":
        request.getfixturevalue("incus_ready")
    DAEMON["name"] = request.param
    marker = Path(f"/tmp/lxdkvm-pwned-{unique}-{request.param}")
    marker.unlink(missing_ok=True)
    lab_file = tmp_path_factory.mktemp("lab") / f"{LAB}.yaml"
    lab_file.write_text(LAB_FILE)
    saved = os.environ.get("LXDKVM_STATE_DIR")
    os.environ["LXDKVM_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    lxdkvm("down", LAB, ok=False)
    try:
        lxdkvm("up", str(lab_file), timeout=900)
        turn_hostile(marker)
        listed = subprocess.run([client(), "exec", "--project", PROJECT, HOST, "--", "virsh", "-q", "list", "--all",
                                 "--name"], capture_output=True, text=True, check=True).stdout
        assert "evil-state" in listed and "vm-a" in listed  # the wrapper answers, the real virsh too
        yield marker
    finally:
        lxdkvm("down", LAB, ok=False, timeout=300)
        if saved is None:
            os.environ.pop("LXDKVM_STATE_DIR", None)
        else:
            os.environ["LXDKVM_STATE_DIR"] = saved
        assert not marker.exists(), "a hostile host ran a command on this machine"


def assert_defended(marker: Path, proc: subprocess.CompletedProcess) -> None:
    """The payload ran nowhere and appears nowhere (warnings describe a value without repeating it), the
    dropped domains are in no data (only named in warnings: on stderr, or a --json document's "warnings"),
    and the command warned about the host."""
    output = proc.stdout + proc.stderr
    assert not marker.exists(), "a hostile host ran a command on this machine"
    for shown in ("lookup(", marker.name, "\x1b", "\x07", "\\u001b", "[bold]"):
        assert shown not in output, (shown, output[-3000:])
    data = proc.stdout
    if data.lstrip().startswith("{"):  # --json carries its warnings in the document: the data is the rest
        data = json.dumps({k: v for k, v in json.loads(data).items() if k != "warnings"})
    for dropped in ("evil-state", "evil-ansi", "evil-tabs", "evil-spec"):
        assert dropped not in data, (dropped, data[-3000:])
    assert "warning:" in proc.stderr and f"{HOST}:" in proc.stderr, proc.stderr[-3000:]


def test_status_json_lists_only_valid_guests_and_says_what_it_left_out(hostile):
    proc = lxdkvm("status", LAB, "--json")
    assert_defended(hostile, proc)
    status = json.loads(proc.stdout)
    guests = {g["name"]: g for h in status["hosts"] for g in h["guests"]}
    assert set(guests) == {"vm-a", "evil-marker"} and guests["vm-a"]["booted"]
    assert not guests["evil-marker"]["booted"] and guests["evil-marker"]["boot_id"] == ""
    assert any(w.startswith(f"{HOST}: ") for w in status["warnings"])


@pytest.mark.parametrize("fmt", ["yaml", "ini", "json"])
def test_inventories_carry_no_payload(hostile, fmt):
    proc = lxdkvm("inventory", LAB, "--format", fmt)
    assert_defended(hostile, proc)
    assert "vm-a" in proc.stdout


def test_the_graph_draws_no_payload(hostile):
    proc = lxdkvm("graph", LAB, "-f", "dot")
    assert_defended(hostile, proc)
    assert "vm-a" in proc.stdout


def test_provision_runs_no_payload(hostile):
    proc = lxdkvm("provision", LAB, "--playbook", "verify.yml", timeout=900)
    assert_defended(hostile, proc)
