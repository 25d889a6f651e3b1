"""The tools people already use, pointed at a real lab unchanged (docs/tools.md): ssh through `lxdkvm
ssh-config` (with -F, and Included from a home directory's ~/.ssh/config), host keys checked and a wrong
one refused, virsh over qemu+ssh as the lab's user without root, virt-install defining and starting a
tiny guest in a lab host, then removing it.

The lab is the one docs/tools.md shows (its `yaml` block, renamed); the page's `sh` blocks are run as
written, section by section, in a shell whose home is a temporary directory, also in root's passwd entry
(ssh reads ~/.ssh/config from there, not from $HOME): a copy of /etc/passwd bound over it in a private
mount namespace, so the machine's own ~/.ssh is never read or changed. The lab's state is a temporary
LXDKVM_STATE_DIR; the page's /var/lib/lxdkvm/labs/ becomes it."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_labs import lxc_json, on

pytestmark = pytest.mark.integration
REPO = Path(__file__).parent.parent.parent
DOCS = REPO / "docs" / "tools.md"
LAB, PROJECT, HOSTS = "tools-clients", "lxdkvm-tools-clients", ["kvm-1", "kvm-2"]
# the sections of docs/tools.md whose `sh` blocks this module runs (a new section: add it and a test)
SECTIONS = ("ssh and ssh-config", "virsh and virt-manager", "virt-install")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """Each `## ` section of the page → its fenced blocks (language, body), in order; the intro is ""."""
    found: dict[str, list[tuple[str, str]]] = {}
    for number, part in enumerate(re.split(r"^## ", text, flags=re.MULTILINE)):
        heading = part.split("\n", 1)[0].strip() if number else ""
        found[heading] = BLOCK.findall(part)
    return found


def adapted(text: str, state: Path) -> str:
    return text.replace("my-lab", LAB).replace("/var/lib/lxdkvm/labs/", f"{state}/labs/")


def run(*command: str, ok: bool = True, timeout: float = 600, env: dict | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)
    print(f"$ {' '.join(command)[:300]} → {proc.returncode} in {time.monotonic() - start:.1f}s\n"
          f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}", flush=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def lxdkvm(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "lxdkvm", *args, ok=ok, timeout=900)


class Shell:
    """Runs a docs block as `sh -eu` with /root bound to a temporary home, in a working directory of its
    own; variables a block sets are exported to the next ones (a section reads like one session)."""

    def __init__(self, home: Path, work: Path, state: Path):
        self.home, self.work, self.state = home, work, state
        self.saved = work / ".exported"

    def __call__(self, script: str, ok: bool = True) -> subprocess.CompletedProcess:
        body = (f"set -eu\nset -a\n[ ! -f {self.saved} ] || . {self.saved}\n{script}\n"
                f"export -p > {self.saved}\n")
        (self.work / ".block.sh").write_text(body)
        passwd = self.work / ".passwd"  # root's home is the temporary one: ssh's ~ comes from here
        passwd.write_text("".join(re.sub(r"^(root:[^:]*:0:[^:]*:[^:]*:)[^:]*:", rf"\g<1>{self.home}:", line)
                                  for line in Path("/etc/passwd").read_text().splitlines(keepends=True)))
        wrapper = 'mount --bind "$1" /etc/passwd && cd "$2" && exec sh -x "$2/.block.sh"'
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return run("unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper, "-",
                   str(passwd), str(self.work), ok=ok, timeout=300,
                   env={"HOME": str(self.home), "PATH": path, "LXDKVM_STATE_DIR": str(self.state)})


@pytest.fixture(scope="module")
def lab(lxd, baked_image, tmp_path_factory):
    """The docs' lab, up, with its state in a temporary directory; down afterwards, also on failure."""
    page = DOCS.read_text()
    state = tmp_path_factory.mktemp("state")
    lab_file = tmp_path_factory.mktemp("lab") / f"{LAB}.yaml"
    (yaml_block,) = [body for language, body in sections(page)[""] if language == "yaml"]
    lab_file.write_text(adapted(yaml_block, state))
    saved = os.environ.get("LXDKVM_STATE_DIR")
    os.environ["LXDKVM_STATE_DIR"] = str(state)
    try:
        start = time.monotonic()
        lxdkvm("up", str(lab_file))
        print(f"lxdkvm up ({len(HOSTS)} hosts, 1 guest): {time.monotonic() - start:.1f}s", flush=True)
        home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
        yield {"state": state / "labs" / LAB, "page": page,
               "shell": Shell(home, work, state), "home": home, "work": work, "tmp": tmp_path_factory}
    finally:
        lxdkvm("down", LAB, ok=False)
        if saved is None:
            os.environ.pop("LXDKVM_STATE_DIR", None)
        else:
            os.environ["LXDKVM_STATE_DIR"] = saved
        assert PROJECT not in {p["name"] for p in lxc_json("project", "list")}
        assert not (state / "labs" / LAB).exists()


def blocks(lab, heading: str) -> list[str]:
    found = [adapted(body, lab["state"].parent.parent) for language, body in sections(lab["page"])[heading]
             if language == "sh"]
    assert found, f"docs/tools.md has no sh block under '## {heading}'"
    return found


def test_the_test_runs_every_section_of_the_page_it_knows():
    assert set(SECTIONS) <= set(sections(DOCS.read_text()))


def test_up_wrote_the_ssh_config_that_ssh_config_prints(lab):
    written = (lab["state"] / "ssh_config").read_text()
    assert written == lxdkvm("ssh-config", LAB).stdout
    assert (lab["state"] / "ssh_config").stat().st_mode & 0o777 == 0o600
    for host in HOSTS:
        assert f"Host {host}.{LAB} {host}\n" in written  # no other lab in this state directory has one
    assert written.count("StrictHostKeyChecking yes") == len(HOSTS)


def test_ssh_reaches_every_host_by_both_names_with_host_keys_checked(lab):
    """The section's blocks: `ssh -F`, then the Include from ~/.ssh/config (the temporary home)."""
    first, second = blocks(lab, "ssh and ssh-config")
    out = lab["shell"](first)
    assert out.stdout.splitlines()[0] == "kvm-1" and "uid=" in out.stdout and "(lab)" in out.stdout
    out = lab["shell"](second)
    assert out.stdout.splitlines()[0] == "kvm-1" and "load average" in out.stdout
    assert "Permanently added" not in out.stderr  # nothing trusted on first use
    config = (lab["home"] / ".ssh" / "config").read_text()
    assert config.startswith(f"Include {lab['state'].parent}/*/ssh_config\n")
    lab["shell"](second)  # a second run leaves one Include line
    assert (lab["home"] / ".ssh" / "config").read_text().count("Include") == 1
    assert on(PROJECT, "kvm-1", "test", "-s", "/tmp/tools-clients.ssh_config").returncode == 0  # scp


def _tampered(lab, name: str, known: str) -> Path:
    """The lab's ssh config with its known_hosts replaced by KNOWN."""
    folder = lab["tmp"].mktemp(name)
    (folder / "known_hosts").write_text(known)
    config = (lab["state"] / "ssh_config").read_text().replace(str(lab["state"] / "known_hosts"),
                                                              str(folder / "known_hosts"))
    (folder / "ssh_config").write_text(config)
    return folder


def test_a_wrong_or_missing_pinned_key_is_refused(lab):
    other = lab["tmp"].mktemp("otherkey") / "key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    wrong = re.sub(r"ssh-ed25519 \S+", " ".join(Path(f"{other}.pub").read_text().split()[:2]),
                   (lab["state"] / "known_hosts").read_text())
    for name, known, says in (("wrong", wrong, "REMOTE HOST IDENTIFICATION HAS CHANGED"),
                              ("missing", "", "No ED25519 host key is known for kvm-1")):
        folder = _tampered(lab, name, known)
        for typed in ("kvm-1", f"kvm-1.{LAB}"):
            proc = run("ssh", "-F", str(folder / "ssh_config"), "-o", "BatchMode=yes", typed, "true",
                       ok=False, timeout=60)
            assert proc.returncode == 255 and says in proc.stderr
            assert "Host key verification failed" in proc.stderr
        assert (folder / "known_hosts").read_text() == known  # and nothing was learnt
    uri = lxdkvm("uri", "--standalone", LAB, "kvm-1").stdout.strip()
    wrong_file = _tampered(lab, "libssh", wrong) / "known_hosts"
    proc = run("virsh", "-c", uri.replace(str(lab["state"] / "known_hosts"), str(wrong_file)), "list",
               ok=False, timeout=60)
    assert proc.returncode != 0 and "HOST KEY VERIFICATION FAILED" in proc.stderr


def test_virsh_manages_a_host_as_the_lab_user_without_root(lab):
    """`lxdkvm uri`, then the section's blocks; the user on the far side is `lab`, in group libvirt, not
    root, and no sudo is involved (libvirt's polkit rule for the libvirt group)."""
    assert lxdkvm("uri", LAB, "kvm-1").stdout == f"qemu+ssh://lab@kvm-1.{LAB}/system\n"
    uri_first, standalone = blocks(lab, "virsh and virt-manager")
    out = lab["shell"](uri_first)
    assert re.search(r"^\s*\d+\s+vm-a\s+running$", out.stdout, re.MULTILINE)  # the lab's own guest
    assert "CPU model:" in out.stdout
    out = lab["shell"](standalone)
    assert re.search(r"^\s*\d+\s+vm-a\s+running$", out.stdout, re.MULTILINE)
    who = lab["shell"](f"ssh kvm-2.{LAB} 'id -u; id -Gn; virsh -c qemu:///system list --name --all'")
    uid, groups, *_domains = who.stdout.splitlines()
    assert uid != "0" and "libvirt" in groups.split()  # the lab's user itself, by its group


def test_virt_install_defines_and_starts_a_tiny_guest_then_it_is_removed(lab):
    define, remove = blocks(lab, "virt-install")
    out = lab["shell"](define)
    assert out.stdout.strip().splitlines()[-1] == "running"
    seen = on(PROJECT, "kvm-1", "virsh", "-c", "qemu:///system", "domstate", "scratch")  # as root, over LXD
    assert seen.stdout.strip() == "running"
    xml = on(PROJECT, "kvm-1", "virsh", "-c", "qemu:///system", "dumpxml", "scratch").stdout
    assert "<kernel>/var/lib/lxdkvm/tiny/" in xml and "lxdkvm.name=scratch" in xml
    time.sleep(2)
    cpu = on(PROJECT, "kvm-1", "virsh", "-c", "qemu:///system", "domstats", "--cpu-total", "scratch").stdout
    assert int(re.search(r"cpu\.time=(\d+)", cpu).group(1)) > 0  # QEMU runs it, not just a definition
    try:
        lab["shell"](remove)
    finally:
        on(PROJECT, "kvm-1", "sh", "-c", "virsh destroy scratch; virsh undefine scratch")
    listed = on(PROJECT, "kvm-1", "virsh", "-c", "qemu:///system", "list", "--all", "--name").stdout.split()
    assert "scratch" not in listed and "vm-a" in listed


SECOND, SECOND_PROJECT = "tools-clients2", "lxdkvm-tools-clients2"
SECOND_LAB = f"""name: {SECOND}
networks:
  - {{name: mgmt, subnet: 10.231.11.0/24}}
hosts:
  - {{name: kvm-2, networks: [mgmt], limits: {{memory: 1GiB}}}}
"""


def test_a_bare_name_two_labs_share_is_in_neither_config_until_one_goes_down(lab):
    """A second lab with a kvm-2: both labs' files lose the bare `kvm-2` (ssh cannot resolve it), each
    `kvm-2.LAB` reaches its own host; once the second lab is down, the first has `kvm-2` again."""
    lab_file = lab["tmp"].mktemp("second") / f"{SECOND}.yaml"
    lab_file.write_text(SECOND_LAB)
    first = lab["state"] / "ssh_config"
    try:
        lxdkvm("up", str(lab_file))
        second = lab["state"].parent / SECOND / "ssh_config"
        assert f"Host kvm-2.{LAB}\n" in first.read_text() and f"Host kvm-1.{LAB} kvm-1\n" in first.read_text()
        assert f"Host kvm-2.{SECOND}\n" in second.read_text()
        ids = lab["shell"](f"ssh kvm-2.{LAB} cat /etc/machine-id; ssh kvm-2.{SECOND} cat /etc/machine-id")
        assert ids.stdout.split() == [on(project, "kvm-2", "cat", "/etc/machine-id").stdout.strip()
                                      for project in (PROJECT, SECOND_PROJECT)]
        bare = lab["shell"]("ssh -o BatchMode=yes kvm-2 true", ok=False)
        assert bare.returncode == 255 and "Could not resolve hostname kvm-2" in bare.stderr
    finally:
        lxdkvm("down", SECOND, ok=False)
    assert SECOND_PROJECT not in {p["name"] for p in lxc_json("project", "list")}
    assert f"Host kvm-2.{LAB} kvm-2\n" in first.read_text()
    assert lab["shell"]("ssh kvm-2 hostname").stdout.strip() == "kvm-2"


def test_the_page_uses_only_clients_setup_installs():
    from lxdkvm.machine import programs

    for program in ("ssh", "virsh", "virt-install"):
        assert program in programs.CLIENTS and shutil.which(program)
