"""A live migration over an impaired link still completes, against real hosts and real guests: a tiny
guest moves from cap-2 to cap-1 over the lab's isolated network, then back over a link to cap-2 that drops
2% of frames and carries at most 50 Mbit/s. The guest keeps its boot id and address, the move takes at
least as long as its memory needs at that rate, and the impairment really dropped frames of it.

Run alone: python3 -m pytest tests/integration/test_impair_migration.py"""

import json
import re
import subprocess

import pytest

from .test_capture import NAME, capture_lab
from .test_labs import lxdkvm

pytestmark = pytest.mark.integration
RATE_MBIT = 50


@pytest.fixture(scope="module")
def lab(lxd, baked_image):
    with capture_lab():
        yield
    assert f"lxdkvm-{NAME}" not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def migrate(to: str) -> dict:
    done = json.loads(lxdkvm("migrate", NAME, "vm-3", "--to", to, "--json", timeout=900).stdout)
    print({k: v for k, v in done.items() if not isinstance(v, (dict, list))})
    assert done["same_boot"] and done["running"] and done["address_answers"]
    return done


def dropped(host: str) -> int:
    table = subprocess.run(["nft", "list", "table", "bridge", f"lxdkvm-{NAME}"], capture_output=True, text=True,
                           check=True).stdout
    rule = next(line for line in table.splitlines() if f"impair data {host} " in line)
    return int(re.search(r"counter packets ([0-9]+)", rule).group(1))


def test_a_live_migration_over_a_lossy_slow_link_completes(lab):
    free = migrate("cap-1")
    lxdkvm("impair", NAME, "data", "--host", "cap-2", "--loss", "2%", "--rate", f"{RATE_MBIT}Mbit")
    slow = migrate("cap-2")
    floor_ms = slow["memory_mib"] * 2**20 * 8 / (RATE_MBIT * 1e6) * 1000
    print(f"unimpaired {free['libvirt_ms']} ms, impaired {slow['libvirt_ms']} ms, floor {floor_ms:.0f} ms, "
          f"{dropped('cap-2')} frames dropped")
    assert slow["libvirt_ms"] >= 0.9 * floor_ms > free["libvirt_ms"]
    assert dropped("cap-2") > 0
