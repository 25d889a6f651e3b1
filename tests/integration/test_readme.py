"""The README's tour, run as written: every command of its `sh` block, in order, each must succeed.

If a command or an option changes, this test fails, so the README cannot rot. The tour brings up
tests/labs/valid/guests.yaml and takes it down; LXD must be as it was afterwards."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_labs import lxd_snapshot

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def tour_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_tour_block_is_there_and_covers_the_product():
    commands = tour_commands()
    verbs = [c.split()[1] for c in commands]
    for verb in ("doctor", "up", "verify", "guest-exec", "migrate", "inventory", "provision", "down"):
        assert verb in verbs, verb


def test_every_tour_command_succeeds_in_order(lxd):
    before = lxd_snapshot()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        for command in tour_commands():
            proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=900)
            print(f"$ {command} → {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}", flush=True)
            assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
    finally:
        subprocess.run([sys.executable, "-m", "lxdkvm", "down", "guests"], capture_output=True, timeout=300)
    assert lxd_snapshot() == before
