"""lxdkvm's pytest plugin for real: the example suite `examples/pytest` run as a user runs it (`python -m
pytest examples/pytest` in a subprocess: real pytest, the plugin loaded through its entry point, its own
pytest.ini and conftest.py) against the real LXD. Its lab comes up with two hosts and a tiny guest, the
guest survives a live migration, and the lab is gone afterwards; a kept lab is reused and left up, an
edited one converged and left up; `Lab.attach` reads a lab that is up and says what `lxdkvm exec` says.

The outcome is read from pytest's JUnit XML; LXD is observed with `lxc`, not through lxdkvm."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .test_labs import lxc_json, lxdkvm

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
LAB = ROOT / "examples" / "pytest" / "lab.yaml"
PROJECT = "lxdkvm-api-pytest"
ALL_PASSED = {"tests": 3, "failures": 0, "errors": 0, "skipped": 0}


def lab_in_lxd() -> dict:
    """The example lab's project, networks and hosts (with when each was created), as `lxc` lists them."""
    projects = [p["name"] for p in lxc_json("project", "list") if p["name"] == PROJECT]
    networks = sorted(n["name"] for n in lxc_json("network", "list") if n["name"].startswith("api-pytest-"))
    hosts = {i["name"]: (i["status"], i["created_at"]) for i in lxc_json("list", "--project", PROJECT)} \
        if projects else {}
    return {"projects": projects, "networks": networks, "hosts": hosts}


NOTHING = {"projects": [], "networks": [], "hosts": {}}


def run_example(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m pytest examples/pytest --junitxml=…` from the repository, and the counts of its JUnit XML."""
    junit = tmp_path / "junit.xml"
    junit.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pytest", "examples/pytest", f"--junitxml={junit}", *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    print(f"$ pytest examples/pytest {' '.join(options)} → {proc.returncode}\n{proc.stdout[-6000:]}"
          f"{proc.stderr[-2000:]}", flush=True)
    suite = ET.parse(junit).getroot().find("testsuite")
    return proc, {key: int(suite.get(key)) for key in ALL_PASSED}


@pytest.fixture(scope="module")
def example_lab(lxd):
    """No example lab before; none after, whatever happened."""
    lxdkvm("down", str(LAB), ok=False, timeout=300)
    assert lab_in_lxd() == NOTHING
    try:
        yield
    finally:
        lxdkvm("down", str(LAB), ok=False, timeout=300)
    assert lab_in_lxd() == NOTHING, "down left something of the example lab behind"


def test_the_example_suite_brings_its_lab_up_passes_and_takes_it_down(example_lab, tmp_path):
    proc, counts = run_example(tmp_path)
    assert counts == ALL_PASSED and proc.returncode == 0
    assert "lxdkvm: lab api-pytest brought up in" in proc.stdout
    assert "lxdkvm: lab api-pytest taken down" in proc.stdout
    assert lab_in_lxd() == NOTHING


def test_a_kept_lab_is_reused_and_left_up_and_an_edited_one_converged(example_lab, tmp_path):
    proc, counts = run_example(tmp_path, "--lxdkvm-keep")
    assert counts == ALL_PASSED and "lxdkvm: lab api-pytest brought up in" in proc.stdout
    kept = lab_in_lxd()
    assert kept["projects"] == [PROJECT] and len(kept["networks"]) == 2
    assert {name: state for name, (state, _created) in kept["hosts"].items()} == \
        {"kvm-1": "Running", "kvm-2": "Running"}

    proc, counts = run_example(tmp_path)  # the guest starts where the last run moved it
    assert counts == ALL_PASSED and "lxdkvm: lab api-pytest reused (up and unchanged)" in proc.stdout
    assert "taken down" not in proc.stdout
    assert lab_in_lxd() == kept  # the same hosts, not made again, and left up: the fixture did not make them

    edited = tmp_path / "edited.yaml"  # the guest's memory changed: plan recreates it, the hosts stay
    edited.write_text(LAB.read_text().replace("memory: 96MiB", "memory: 112MiB"))
    proc, counts = run_example(tmp_path, f"--lxdkvm-lab={edited}")
    assert counts == ALL_PASSED and "lxdkvm: lab api-pytest was up and differed from its file: converged" \
        in proc.stdout
    assert lab_in_lxd() == kept
    xml = "".join(subprocess.run(["lxc", "exec", "--project", PROJECT, host, "--", "virsh", "dumpxml", "vm-1"],
                                 capture_output=True, text=True, timeout=60).stdout for host in ("kvm-1", "kvm-2"))
    assert "<memory unit='KiB'>114688</memory>" in xml, xml  # 112 MiB: recreated as the edited file says


def test_attach_reads_a_lab_that_is_up_and_exec_says_what_the_command_says(example_lab):
    from lxdkvm import Lab, LxdkvmError

    if not lab_in_lxd()["projects"]:  # on its own: the lab comes up first
        lxdkvm("up", str(LAB), timeout=900)
    lab = Lab.attach("api-pytest")
    assert lab.path.name == "lab.yaml" and lab.project == PROJECT
    status = lab.status()
    assert status.exists and {h.name for h in status.hosts} == {"kvm-1", "kvm-2"}
    assert [g.name for g in status.guests] == ["vm-1"]
    assert lab.exec("kvm-1", "echo $((6 * 7)); echo err >&2; exit 3") == \
        lab.exec("kvm-1", ["sh", "-c", "echo $((6 * 7)); echo err >&2; exit 3"])
    ran = lab.exec("kvm-2", "echo $((6 * 7)); echo err >&2; exit 3")
    assert (ran.exit_code, ran.stdout, ran.stderr) == (3, "42\n", "err\n")
    with pytest.raises(LxdkvmError) as caught:
        lab.exec("kvm-9", ["true"])
    command = lxdkvm("exec", "--lab", "api-pytest", "kvm-9", "--", "true", ok=False)
    assert command.returncode == 1 and str(caught.value) in " ".join(command.stderr.split())
    assert str(caught.value) == "lab project lxdkvm-api-pytest has no host kvm-9 (`lxdkvm status` lists them)"
    checks = lab.verify()  # lxdkvm verify's rows, as values
    assert [c for c in checks if c.result == "FAIL"] == [] and ("guest vm-1", "booted") in \
        {(c.scope, c.name) for c in checks}
    assert lab.warnings == []
    with pytest.raises(LxdkvmError, match="lab api-nothing is not up"):
        Lab.attach("api-nothing")
