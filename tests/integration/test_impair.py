"""Impaired links against a real LXD and this machine's real kernel (nftables, tc): a two-host lab whose
file impairs one link; loss measured between the hosts lies inside the binomial 99.9% interval of what was
asked, throughput under a rate stays under it, `--clear` restores the link, what the kernel lacks is
refused and changes nothing, and `down` leaves no table and no qdisc behind.

The hosts have python3 but no ping or iperf: tests/integration/netprobe.py runs in them (sent on stdin).
Run alone: python3 -m pytest tests/integration/test_impair.py"""

import json
import math
import subprocess
from pathlib import Path

import pytest

from lxdkvm.machine import impair as kernel

from .. import jsonschemas
from .test_labs import lxd_snapshot, lxdkvm

pytestmark = pytest.mark.integration
LAB = Path(__file__).parent.parent / "labs" / "valid" / "impair.yaml"
NAME, PROJECT = "net-impair", "lxdkvm-net-impair"
ADDRESS = {"imp-1": "10.239.2.11", "imp-2": "10.239.2.12"}  # on the isolated network `data`
PROBE = (Path(__file__).parent / "netprobe.py").read_text()
PINGS = 300


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """The central CONFIDENCE interval of Binomial(N, P): [lo, hi] with at most (1-CONFIDENCE)/2 of the
    probability below lo and at most as much above hi (exact sums, no normal approximation)."""
    tail = (1 - confidence) / 2
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    lo, below = 0, 0.0
    while below + pmf[lo] <= tail:
        below += pmf[lo]
        lo += 1
    hi, above = n, 0.0
    while above + pmf[hi] <= tail:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def on(host: str, *args: str, timeout: float = 120) -> dict:
    done = subprocess.run(["lxc", "exec", "--project", PROJECT, host, "--", "python3", "-", *args], input=PROBE,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def lost(source: str, target: str, count: int = PINGS) -> int:
    got = on(source, "ping", ADDRESS[target], str(count), "0.01")
    print(f"ping {source} → {target}: {got}")
    return got["sent"] - got["received"]


def throughput(source: str, target: str, size: int) -> float:
    """Bit/s of SIZE bytes sent from SOURCE to TARGET over TCP, timed at the receiver."""
    sink = subprocess.Popen(["lxc", "exec", "--project", PROJECT, target, "--", "python3", "-", "sink", "5001"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sink.stdin.write(PROBE)
    sink.stdin.close()
    assert "listening" in sink.stdout.readline()
    on(source, "send", ADDRESS[target], "5001", str(size))
    result = json.loads(sink.stdout.readline())
    sink.wait(timeout=60)
    assert result["bytes"] == size
    rate = size * 8 / result["seconds"]
    print(f"{size} bytes {source} → {target} in {result['seconds']:.2f} s: {rate / 1e6:.3f} Mbit/s")
    return rate


def impair(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return lxdkvm("impair", NAME, "data", *args, ok=ok, timeout=120)


def in_force() -> dict:
    doc = json.loads(impair("--json").stdout)
    assert jsonschemas.problems("impair", doc) == []
    return doc


def tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def ours() -> dict:
    """What LXD has of this lab (other people's labs come and go meanwhile)."""
    return {kind: [n for n in names if NAME in n] for kind, names in lxd_snapshot().items()}


@pytest.fixture(scope="module")
def lab(lxd, baked_image):
    """The lab up (its file impairs imp-2's link on `data`); afterwards `down`, and nothing of it left in
    LXD or the kernel."""
    assert ours() == {"projects": [], "networks": [], "instances": [], "profiles": []}, \
        f"a previous run left the lab up: lxdkvm down {NAME}"
    try:
        lxdkvm("up", str(LAB), timeout=900)
        yield
    finally:
        lxdkvm("down", str(LAB), ok=False, timeout=600)
    assert ours() == {"projects": [], "networks": [], "instances": [], "profiles": []}
    assert f"lxdkvm-{NAME}" not in tables()


def test_the_lab_file_impairment_is_in_force_and_shown(lab):
    doc = in_force()
    assert doc["changed"] is False
    assert [(e["host"], e["loss_percent"]) for e in doc["impairments"]] == [("imp-2", 20.0)]
    device = doc["impairments"][0]["device"]
    assert f"table bridge lxdkvm-{NAME}" in tables()
    status = json.loads(lxdkvm("status", NAME, "--json").stdout)
    assert jsonschemas.problems("status", status) == []
    assert status["impairments"] == [{"network": "data", "host": "imp-2", "loss_percent": 20.0}]
    assert "impaired towards imp-2: loss 20%" in lxdkvm("status", NAME).stdout
    assert "impaired → imp-2: loss 20%" in lxdkvm("graph", NAME, "-f", "mermaid").stdout
    assert Path("/sys/class/net", device, "master").resolve().name == f"{NAME}-data"


@pytest.mark.parametrize("args, p", [(("--host", "imp-2", "--loss", "30%"), 0.30),
                                     # both hosts' links: a request meets 30% at imp-2, its answer at imp-1
                                     (("--loss", "30%"), 1 - 0.7 * 0.7)])
def test_measured_loss_is_inside_the_binomial_interval(lab, args, p):
    impair(*args)
    lo, hi = binomial_interval(PINGS, p)
    got = lost("imp-1", "imp-2")
    print(f"asked p={p:.2f}: {got}/{PINGS} lost, 99.9% interval [{lo}, {hi}]")
    assert lo <= got <= hi
    assert lo > 0  # the interval excludes an unimpaired link: the test can fail


def test_clear_restores_the_link(lab):
    impair("--clear")
    assert in_force()["impairments"] == []
    assert lost("imp-1", "imp-2") == 0
    assert lost("imp-2", "imp-1") == 0


def test_throughput_stays_under_the_rate(lab):
    free = throughput("imp-1", "imp-2", 4_000_000)
    impair("--host", "imp-2", "--rate", "2Mbit")
    device = in_force()["impairments"][0]["device"]
    assert kernel.qdisc_kind(device) == "tbf"
    limited = throughput("imp-1", "imp-2", 1_000_000)
    assert 0.6 * 2e6 <= limited <= 1.1 * 2e6
    assert free > 5 * limited
    back = throughput("imp-2", "imp-1", 1_000_000)  # imp-1's link is not limited
    assert back > 5 * limited
    impair("--clear")
    assert kernel.qdisc_kind(device) != "tbf"


def test_what_the_kernel_lacks_is_refused_and_changes_nothing(lab):
    impair("--host", "imp-2", "--loss", "5%")
    before = in_force()["impairments"]
    if kernel.probe()["delay"]:
        impair("--host", "imp-2", "--delay", "20ms", "--jitter", "5ms")
        assert kernel.qdisc_kind(in_force()["impairments"][0]["device"]) == "netem"
        return
    refused = impair("--host", "imp-2", "--delay", "20ms", ok=False)
    assert refused.returncode == 1
    assert "delay needs the netem qdisc" in refused.stderr and "nothing was changed" in refused.stderr
    assert in_force()["impairments"] == before


def test_bad_input_is_refused_before_anything_is_read(lab):
    for args, words in [(("--loss", "300%"), "between 0.01% and 100%"), (("--rate", "2MB/s"), "not a rate"),
                        (("--clear", "--loss", "1%"), "--clear takes no"), (("--host", "imp-9", "--loss", "1%"),
                                                                            "no host 'imp-9'")]:
        result = impair(*args, ok=False)
        assert result.returncode in (1, 2) and words in result.stderr
    result = lxdkvm("impair", NAME, "data;reboot", "--loss", "1%", ok=False)
    assert "is not a network's name" in result.stderr


def test_down_leaves_no_table_and_no_qdisc(lab):
    impair("--rate", "4Mbit")
    devices = [e["device"] for e in in_force()["impairments"]]
    assert len(devices) == 2 and all(kernel.qdisc_kind(d) == "tbf" for d in devices)
    lxdkvm("down", str(LAB), timeout=600)
    assert f"lxdkvm-{NAME}" not in tables()
    qdiscs = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True, check=True).stdout
    assert not any(d in qdiscs for d in devices)
    assert not any(Path("/sys/class/net", d).exists() for d in devices)
