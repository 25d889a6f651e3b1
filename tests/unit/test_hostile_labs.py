"""Hostile lab files (tests/labs/hostile/): each is refused with the exact golden message, quickly and in
little memory, never with a traceback; the --allow-* flags lift exactly their own class of refusal.

Files that cannot sensibly be committed (50 MB, /dev/zero, a FIFO, a directory, 100,000 nested `[`) are
made in tmp_path here. No LXD."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxdkvm.errors import LxdkvmError
from lxdkvm.lab.load import lab_name
from lxdkvm.labfile import checks, read, yamlread
from lxdkvm.labfile import topology as t

from .test_labs import MACHINE as CI_MACHINE

HOSTILE = Path(__file__).parent.parent / "labs" / "hostile"
FILES = sorted(HOSTILE.glob("[0-9][0-9]*-*.yaml"), key=lambda p: int(p.name.split("-")[0]))  # 01- … 124-
MACHINE = dataclasses.replace(CI_MACHINE, memory=24 * 2**30, pool_free_mib=50 * 1024)
SECONDS = 2.0  # per file; the worst one takes ~0.3 s on the 2-core CI machine
MAX_RSS_MB = 100
NONE = checks.Allowances()


def problems_of(path: Path, allow: checks.Allowances = NONE) -> str:
    """What `lxdkvm up PATH` prints about PATH (with PATH's name as the source), or "" when it is valid."""
    try:
        text, _ = read.read(path)
    except t.LabInvalid as exc:
        return t.LabInvalid(path.name, exc.problems).report() + "\n"
    lab, problems, _ = read.parse(text, path.name)
    if lab is not None:
        problems += checks.check(lab, dataclasses.replace(MACHINE, allow=allow))
    return t.LabInvalid(path.name, problems).report() + "\n" if problems else ""


def timed(path: Path) -> tuple[str, float]:
    start = time.perf_counter()
    got = problems_of(path)
    return got, time.perf_counter() - start


def test_there_are_at_least_100_hostile_labs_numbered_once():
    numbers = [int(p.name.split("-")[0]) for p in FILES]
    assert len(FILES) >= 100 and len(set(numbers)) == len(numbers)
    assert all(p.with_suffix(".expected").exists() for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_hostile_lab_gives_the_expected_problems_quickly(path):
    expected = path.with_suffix(".expected")
    got, seconds = timed(path)
    if os.environ.get("LXDKVM_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got, f"{path.name} should be rejected"
    assert got == expected.read_text()
    for line in got.splitlines():  # every problem names the file and a line, in printable characters
        assert line.startswith((f"{path.name}:", "    hint: ")) and line.isprintable()
    assert seconds < SECONDS


# ------------------------------------------------------------------------------- made here, not committed
def _big(tmp: Path) -> Path:
    path = tmp / "big.yaml"
    with open(path, "wb") as out:
        out.truncate(50 * 10**6)  # 50 MB (sparse): refused by its size, before a byte is read
    return path


def _over_cap(tmp: Path) -> Path:
    path = tmp / "over.yaml"
    path.write_bytes(b"# x\n" * (yamlread.MAX_BYTES // 4 + 1))
    return path


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo.yaml"
    os.mkfifo(path)  # nobody writes: reading must still end
    return path


def _dir(tmp: Path) -> Path:
    path = tmp / "dir.yaml"
    path.mkdir()
    return path


def _text(name: str, text: str):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_text(text)
        return path
    return make


GENERATED = {  # name → (make the file, what the one problem says)
    "50-megabytes": (_big, "(file): is 50000000 bytes, more than a lab file may be (1048576 bytes)"),
    "over-the-cap": (_over_cap, "(file): is 1048580 bytes, more than a lab file may be (1048576 bytes)"),
    "dev-zero": (lambda tmp: Path("/dev/zero"),
                 "(file): is more than 1048576 bytes, more than a lab file may be"),
    "fifo-without-writer": (_fifo, "(file): the lab file is empty"),
    "directory": (_dir, "(file): is a directory, not a lab file"),
    "missing": (lambda tmp: tmp / "missing.yaml",
                "(file): cannot read the lab file: No such file or directory"),
    "100k-deep-brackets": (_text("deep.yaml", "[" * 100_000), "(file): nests deeper than 32 levels"),
    "100k-deep-mappings": (_text("deepmap.yaml", "{a: " * 100_000), "(file): nests deeper than 32 levels"),
    "dense-values-under-the-cap": (_text("dense.yaml", "[" + "x," * 500_000 + "]"),
                                   "(file): has more than 20000 values"),
    "one-long-line-under-the-cap": (_text("long.yaml", "name: " + "x" * (yamlread.MAX_BYTES - 100)
                                          + "\nhosts: [{name: a}]\n"), "name: 'xxxxxxxx"),
}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_hostile_input_is_refused_quickly(name, tmp_path):
    make, says = GENERATED[name]
    path = make(tmp_path)
    got, seconds = timed(path)
    first = got.splitlines()[0]
    assert first.startswith(f"{path.name}:") and says in first, got
    assert len(got) < 2000 and seconds < SECONDS


def test_hostile_files_stay_within_the_memory_bound(tmp_path):
    """One fresh process reads every hostile file (and the generated ones); its peak RSS is bounded."""
    paths = [str(p) for p in FILES] + [str(make(tmp_path)) for make, _ in GENERATED.values()]
    script = (
        "import json, sys, time\n"
        "from lxdkvm.labfile import checks, read, topology as t\n"
        "worst = {}\n"
        "for path in sys.argv[1:]:\n"
        "    start = time.perf_counter()\n"
        "    try:\n"
        "        lab, problems, _ = read.parse(*read.read(path))\n"
        "        problems or checks.check(lab, checks.Machine(cpus=2, memory=2**34))\n"
        "    except t.LabInvalid:\n"
        "        pass\n"
        "    worst[path] = time.perf_counter() - start\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent (pytest, which
        # grows during a run), while VmHWM is this process's own memory's high-water mark
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "rss_mb = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps({'rss_mb': rss_mb, 'seconds': worst}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, *paths], check=False, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    slowest = max(result["seconds"].items(), key=lambda item: item[1])
    print(f"peak RSS {result['rss_mb']:.0f} MB; slowest {Path(slowest[0]).name} {slowest[1]:.2f} s")
    assert result["rss_mb"] < MAX_RSS_MB
    assert slowest[1] < SECONDS


# ------------------------------------------------------------------------------- what should just work
@pytest.mark.parametrize("name", ["ok-bom.yaml", "ok-crlf.yaml"])
def test_a_byte_order_mark_and_crlf_line_ends_just_work(name):
    path = HOSTILE / name
    assert problems_of(path) == ""
    lab, _, _ = read.parse(*read.read(path))
    assert lab.hosts[0].name == "kvm-1" and lab.hosts[0].line == 5 and lab.networks[0].line == 3


# ---------------------------------------------------------------------------- down/status read names safely
@pytest.mark.parametrize("stem", ["40-billion-laughs", "41-recursive-alias", "49-deep-nesting",
                                  "37-python-object-tag", "47-bidi-and-escape-in-names",
                                  "48-shell-metacharacters-in-names", "32-binary-with-nul"])
def test_the_lab_name_of_a_hostile_file_is_a_clean_error(stem):
    with pytest.raises(t.LabInvalid) as raised:
        lab_name(HOSTILE / f"{stem}.yaml")
    assert raised.value.report().isprintable() or "\n" in raised.value.report()


@pytest.mark.parametrize("name", ['"default\\n"', '"default\\u2028"', '"def\\u202eault"'])
def test_a_lab_name_with_a_control_character_is_refused_by_down_and_status(name, tmp_path):
    """Python's `$` matches before a final line break: the name is refused for its character, not by a
    pattern."""
    path = tmp_path / "lab.yaml"
    path.write_text(f"name: {name}\nhosts: [{{name: a}}]\n")
    with pytest.raises(t.LabInvalid) as raised:
        lab_name(path)
    assert "holds a" in raised.value.report()


def test_a_lab_name_that_is_not_a_file_is_refused_not_read():
    with pytest.raises(LxdkvmError):
        lab_name("/dev/zero")


# ------------------------------------------------------------------------------- the --allow-* flags
ALLOWED_BY = {
    "unconfined": [f"{n:02d}" for n in range(1, 11)],
    "host_devices": [f"{n:02d}" for n in range(11, 21)],
    "cgnat": ["27"],
}


@pytest.mark.parametrize("flag", ALLOWED_BY)
def test_each_allow_flag_lifts_its_own_refusals_and_no_others(flag):
    for path in FILES:
        prefix = path.name.split("-")[0]
        allow = checks.Allowances(**{flag: True})
        if prefix in ALLOWED_BY[flag]:
            assert problems_of(path, allow) == "", path.name
        elif any(prefix in numbers for numbers in ALLOWED_BY.values()):
            assert problems_of(path, allow) == problems_of(path), path.name


def test_every_other_hostile_lab_stays_refused_with_every_flag():
    """Legacy aliases, LXD's own keys, unknown keys, control characters, NIC values, names, sizes and
    user-data are refused whatever the flags: no flag turns a value into syntax."""
    everything = checks.Allowances(unconfined=True, host_devices=True, cgnat=True)
    lifted = {number for numbers in ALLOWED_BY.values() for number in numbers}
    others = [path for path in FILES if path.name.split("-")[0] not in lifted]
    assert len(others) >= 90
    for path in others:
        assert problems_of(path, everything), path.name


def test_cgnat_flag_allows_only_subnets_inside_100_64():
    import ipaddress

    from lxdkvm.labfile import confine
    allow = checks.Allowances(cgnat=True)
    assert confine.subnet_problem(ipaddress.IPv4Network("100.64.8.0/24"), allow) is None
    assert confine.subnet_problem(ipaddress.IPv4Network("100.0.0.0/8"), allow) is not None


def test_profile_nics_on_lab_networks_become_the_labs_bridges():
    from lxdkvm.lab import objects
    lab, problems, _ = read.parse("""
name: nics
networks: [{name: data, subnet: 10.31.0.0/24, mode: isolated, dhcp: false}]
profiles:
  - name: extra
    devices: {eth5: {type: nic, network: data, name: eth5}}
hosts: [{name: a, profiles: [extra]}]
""", "nics.yaml")
    assert not problems and not checks.check(lab, MACHINE)
    want = objects.desired(lab, "default", {"config": {}, "devices": {}})
    eth5 = want.profiles["extra"]["devices"]["eth5"]
    assert eth5 == {"type": "nic", "network": "nics-data", "name": "eth5"}
