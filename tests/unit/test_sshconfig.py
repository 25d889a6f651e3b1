"""The ssh config of a lab (lxdkvm/lab/sshconfig.py, sshfiles.py) on plain data: what it says, what the
real `ssh -G` makes of it, hostile values refused, bare names only where unambiguous, libvirt URIs."""

import shutil
import subprocess
from pathlib import Path

import pytest

from lxdkvm.lab import sshconfig, sshfiles
from lxdkvm.errors import LxdkvmError

ACCESS = sshconfig.Access("lab", Path("/var/lib/lxdkvm/labs/demo/id_ed25519"),
                          Path("/var/lib/lxdkvm/labs/demo/known_hosts"))
ADDRESSES = {"kvm-1": "10.231.10.11", "kvm-2": "10.231.10.12"}


def test_each_host_gets_its_lab_name_and_the_bare_name_only_when_asked():
    text = sshconfig.render("demo", ADDRESSES, ACCESS, frozenset({"kvm-2"}))
    assert "Host kvm-1.demo\n" in text and "Host kvm-2.demo kvm-2\n" in text
    block = text.split("Host kvm-1.demo\n")[1].split("\n\n")[0].splitlines()
    assert block == [
        "  HostName 10.231.10.11", "  User lab", "  IdentityFile /var/lib/lxdkvm/labs/demo/id_ed25519",
        "  IdentitiesOnly yes", "  PreferredAuthentications publickey",
        "  UserKnownHostsFile /var/lib/lxdkvm/labs/demo/known_hosts", "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes", "  HostKeyAlias kvm-1", "  CheckHostIP no", "  UpdateHostKeys no",
        "  ForwardAgent no", "  ForwardX11 no"]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="ssh is in programs.CLIENTS: setup installs it")
@pytest.mark.parametrize("typed", ["kvm-2.demo", "kvm-2"])
def test_the_real_ssh_reads_it_as_meant(tmp_path, typed):
    """`ssh -G` prints the options ssh would use: the address, user, key and pinned known_hosts, host keys
    checked under the alias the known_hosts names, whichever of the names was typed."""
    config = tmp_path / "ssh_config"
    config.write_text(sshconfig.render("demo", ADDRESSES, ACCESS, frozenset({"kvm-2"})))
    out = subprocess.run(["ssh", "-G", "-F", str(config), typed], capture_output=True, text=True,
                         check=True).stdout
    options = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert options["hostname"] == "10.231.10.12" and options["user"] == "lab"
    assert options["identityfile"] == str(ACCESS.private_key) and options["identitiesonly"] == "yes"
    assert options["userknownhostsfile"] == str(ACCESS.known_hosts)
    assert options["globalknownhostsfile"] == "/dev/null"
    assert options["stricthostkeychecking"] == "true" and options["hostkeyalias"] == "kvm-2"
    assert options["forwardagent"] == "no" and options["updatehostkeys"] == "false"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="ssh is in programs.CLIENTS: setup installs it")
def test_a_bare_name_left_out_is_not_matched(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(sshconfig.render("demo", ADDRESSES, ACCESS, frozenset()))
    out = subprocess.run(["ssh", "-G", "-F", str(config), "kvm-1"], capture_output=True, text=True,
                         check=True).stdout
    assert "hostname kvm-1\n" in out and "10.231.10.11" not in out


HOSTILE = {
    "host": ["kvm-1\n  ProxyCommand sh -c x", "kvm 1", "kvm-1 *", "*", "!kvm-1", "kvm-%h", "kvm-1\"", "Kvm-1",
             "kvm_1", "-kvm", "kvm-", "", "k" * 64, "kvm-1\r", "kvm-1\t", "~kvm", "kvm.1", None, 7],
    "lab": ["demo\nHost *", "de mo", "demo*", "%d", "Demo", "", "demo/x"],
    "user": ["lab\n  ProxyCommand x", "la b", "%u", "root\"", "-oProxyCommand=x", "", "Lab", "l" * 33],
    "path": ["relative/key", "/x/%d/key", "/x/~/key", "/x/$HOME", "/x y", "/x\"y", "/x\nProxyCommand y",
             "/x/../etc/shadow", "/x'y", "/x\\y", ""],
    "address": ["10.0.0.1\n  ProxyCommand x", "10.0.0.1 ", "10.0.0.01", "::1", "kvm-1", "10.0.0.1/24",
                "%h", "", "10.0.0.256"],
}


@pytest.mark.parametrize("kind,value", [(k, v) for k, values in HOSTILE.items() for v in values])
def test_a_hostile_value_is_refused_never_written(kind, value):
    lab, addresses, access = "demo", dict(ADDRESSES), ACCESS
    if kind == "host":
        addresses[value] = "10.231.10.13"
    elif kind == "lab":
        lab = value
    elif kind == "user":
        access = sshconfig.Access(value, ACCESS.private_key, ACCESS.known_hosts)
    elif kind == "path":
        access = sshconfig.Access("lab", value, ACCESS.known_hosts)
    else:
        addresses["kvm-1"] = value
    with pytest.raises(LxdkvmError, match=f"refusing to write {kind} .* into an ssh config: it must be"):
        sshconfig.render(lab, addresses, access, frozenset(addresses) if kind == "host" else frozenset())


def test_a_refusal_describes_the_value_without_repeating_it():
    with pytest.raises(LxdkvmError) as refused:
        sshconfig.check("host", "kvm\n  ProxyCommand evil-payload-here")
    assert "\n" not in str(refused.value) and "payload" not in str(refused.value)
    assert "host 'kvm?  ProxyCommand evil-...' (36 characters) into" in str(refused.value)


def test_a_bare_name_another_lab_has_is_left_to_neither():
    others = {"demo": {"kvm-1", "kvm-2"}, "other": {"kvm-2", "db"}}
    assert sshconfig.bare_names("demo", {"kvm-1", "kvm-2"}, others) == {"kvm-1"}
    assert sshconfig.bare_names("other", {"kvm-2", "db"}, others) == {"db"}


def test_libvirt_uris():
    assert sshconfig.uri("demo", "kvm-1", "lab") == "qemu+ssh://lab@kvm-1.demo/system"
    assert sshconfig.standalone_uri("10.231.10.11", ACCESS) == (
        "qemu+libssh://lab@10.231.10.11/system?keyfile=/var/lib/lxdkvm/labs/demo/id_ed25519"
        "&known_hosts=/var/lib/lxdkvm/labs/demo/known_hosts&known_hosts_verify=normal&sshauth=privkey")
    for bad in (("demo", "kvm-1?x=y", "lab"), ("demo", "kvm-1", "lab@evil"), ("de/mo", "kvm-1", "lab")):
        with pytest.raises(LxdkvmError):
            sshconfig.uri(*bad)
    with pytest.raises(LxdkvmError):
        sshconfig.standalone_uri("10.231.10.11&keyfile=/etc/x", ACCESS)
    with pytest.raises(LxdkvmError):
        sshconfig.standalone_uri("10.231.10.11", ACCESS, transport="ext")


def test_hosts_without_an_address_or_with_a_name_ssh_cannot_match_are_left_out_with_a_warning():
    kept, warnings = sshfiles.usable({"kvm-1": "10.231.10.11", "kvm-2": None, "KVM-3": "10.231.10.13",
                                      "kvm-4": "10.231.10.14\nHost *"})
    assert kept == {"kvm-1": "10.231.10.11"}
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)


def test_every_recorded_lab_is_rewritten_so_a_bare_name_is_in_one_file_at_most(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path))
    sshfiles.write("lab-a", {"kvm-1": "10.231.1.11", "kvm-2": "10.231.1.12"})
    assert "Host kvm-1.lab-a kvm-1\n" in sshfiles.config_path("lab-a").read_text()
    sshfiles.write("lab-b", {"kvm-1": "10.231.2.11"})  # now kvm-1 is ambiguous: in neither file
    a, b = sshfiles.config_path("lab-a").read_text(), sshfiles.config_path("lab-b").read_text()
    assert "Host kvm-1.lab-a\n" in a and "Host kvm-2.lab-a kvm-2\n" in a and "Host kvm-1.lab-b\n" in b
    assert "HostName 10.231.2.11" in b and "labs/lab-b/known_hosts" in b
    assert sshfiles.config_path("lab-a").stat().st_mode & 0o777 == 0o600
    from lxdkvm.lab import state

    state.remove("lab-b")
    sshfiles.refresh()  # what `down` does: lab-a has kvm-1 alone again
    assert "Host kvm-1.lab-a kvm-1\n" in sshfiles.config_path("lab-a").read_text()


def test_a_record_that_does_not_parse_claims_no_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path))
    for lab, text in {"broken": "{not json", "hostile": '{"kvm-1\\nHost *": "10.0.0.1"}',
                      "listed": '["kvm-1"]'}.items():
        (tmp_path / "labs" / lab).mkdir(parents=True)
        (tmp_path / "labs" / lab / sshfiles.RECORD).write_text(text)
    sshfiles.write("lab-a", {"kvm-1": "10.231.1.11"})
    assert set(sshfiles.records()) == {"lab-a"}
    assert "Host kvm-1.lab-a kvm-1\n" in sshfiles.config_path("lab-a").read_text()
    assert not (tmp_path / "labs" / "broken" / sshconfig.CONFIG).exists()


def test_a_state_directory_ssh_would_expand_gets_no_config_and_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path / "my state"))  # a space: refused in IdentityFile
    said = []
    sshfiles.write("lab-a", {"kvm-1": "10.231.1.11"}, said.append)
    assert not sshfiles.config_path("lab-a").exists()
    assert len(said) == 1 and said[0].startswith("lab lab-a: no ssh config: refusing to write path")


def test_refresh_makes_nothing_where_no_lab_has_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path / "state"))
    sshfiles.refresh()
    assert not (tmp_path / "state").exists()
