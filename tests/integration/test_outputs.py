"""Outputs for people, against a real LXD: `status --watch` in a real terminal (tmux) while a lab comes up,
on a pipe (a table only when something changed), `graph` annotated with live state, and shell completion
of lab and host names — then `down`, with LXD as it was before.

Run under the shared lock: flock /tmp/lxd-tests.lock python3 -m pytest tests/integration/test_outputs.py"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .test_labs import lxd_snapshot, lxdkvm

pytestmark = pytest.mark.integration
LAB = Path(__file__).parent.parent / "labs" / "valid" / "outputs-a.yaml"
NAME, HOSTS = "outputs-a", ("out-1", "out-2")
REPO = Path(__file__).parent.parent.parent
# Completion is keyed by the program's name (_LXDKVM_COMPLETE): run the installed `lxdkvm` script
SCRIPT = shutil.which("lxdkvm") or str(Path(sys.executable).with_name("lxdkvm"))


@pytest.fixture(scope="module")
def before(lxd):
    """LXD's state before the lab, and the lab's `down` (checked to restore it) afterwards."""
    state = lxd_snapshot()
    assert f"lxdkvm-{NAME}" not in state["projects"], "a previous run left the lab up: lxdkvm down outputs-a"
    yield state
    lxdkvm("down", str(LAB), ok=False)
    assert lxd_snapshot() == state


@pytest.fixture(scope="module")
def ready_image(baked_image):
    return baked_image


class Pane:
    """A command in a detached tmux session of a fixed size: what a person would see."""

    def __init__(self, command: list[str]) -> None:
        self.tmux = shutil.which("tmux")
        self.session = f"lxdkvm-watch-{uuid.uuid4().hex[:6]}"
        shell = " ".join(command)
        subprocess.run([self.tmux, "new-session", "-d", "-s", self.session, "-x", "150", "-y", "40",
                        f"cd {REPO} && {shell}; echo WATCH-ENDED $?; sleep 30"], check=True)

    def text(self) -> str:
        return subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.session], check=False,
                              capture_output=True,
                              text=True).stdout

    def wait_for(self, check, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if check(screen):
                return screen
            time.sleep(0.5)
        pytest.fail(f"{what} not seen in {timeout}s; the pane shows:\n{self.text()}")

    def keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.session, *keys], check=True)

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], check=False, capture_output=True)


def row(screen: str, host: str) -> str:
    """The table row of HOST (between the table's borders)."""
    return next((line for line in screen.splitlines() if f" {host} " in line), "")


def test_status_watch_shows_hosts_come_up_in_a_terminal(before, ready_image):
    pane = Pane([sys.executable, "-m", "lxdkvm", "status", str(LAB), "--watch", "--interval", "1"])
    try:
        pane.wait_for(lambda s: f"lab {NAME} is not up" in s, 20, "the lab not up yet")
        up = subprocess.Popen([sys.executable, "-m", "lxdkvm", "up", str(LAB)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        try:
            screen = pane.wait_for(lambda s: all(row(s, h) for h in HOSTS), 240, "both hosts")
            assert "Ctrl-C to stop" in screen
            seen_not_ready = any(" no " in f" {row(screen, h)} " for h in HOSTS)
            screen = pane.wait_for(lambda s: all(" yes " in f" {row(s, h)} " for h in HOSTS), 600,
                                   "both hosts ready")
            assert "10.212.2.11" in row(screen, "out-1") and "10.212.2.12" in row(screen, "out-2")
            assert "network mgmt: 10.212.1.0/24" in screen
            output, _ = up.communicate(timeout=600)
            assert up.returncode == 0, output
        finally:
            if up.poll() is None:
                up.kill()
        print(f"hosts were seen not ready before ready: {seen_not_ready}")
        pane.keys("C-c")  # ends the watch, with status 0 and no traceback
        screen = pane.wait_for(lambda s: "WATCH-ENDED" in s, 10, "the watch ending")
        assert "WATCH-ENDED 0" in screen and "Traceback" not in screen
    finally:
        pane.close()


def test_status_watch_on_a_pipe_prints_only_changes(before, ready_image):
    proc = subprocess.Popen([sys.executable, "-m", "lxdkvm", "status", NAME, "--watch", "--interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)  # about 12 reads of an unchanged lab
        # SIGTERM, not SIGINT: a suite started in the background hands its children SIGINT ignored
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # never leave it polling the daemon
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.count(f"lab {NAME} (project lxdkvm-{NAME})") == 1, out
    assert "\x1b[" not in out and all(h in out for h in HOSTS)


def test_graph_is_annotated_with_live_state(before, ready_image, tmp_path):
    dot = lxdkvm("graph", str(LAB), "-f", "dot").stdout
    assert "live state from LXD" in dot
    for host in HOSTS:
        assert f"<B>{host}</B><BR/><FONT POINT-SIZE=\"9\">ready</FONT>" in dot
    assert '"eth1 10.212.2.11"' in dot and "(dhcp)" in dot  # a real lease on the NAT network
    mermaid = lxdkvm("graph", NAME).stdout  # by name: from LXD alone
    assert "no lab file given" in mermaid and "out_2d_1" in mermaid and "10.212.1.1" in mermaid
    png = tmp_path / "lab.png"
    lxdkvm("graph", str(LAB), "-o", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")
    plain = lxdkvm("graph", str(LAB), "--no-live", "-f", "dot").stdout
    assert "the lab is not up" in plain and "ready" not in plain.split("legend")[0]


def complete(*words: str, env: dict | None = None) -> tuple[list[str], float]:
    """What bash would offer after `lxdkvm WORDS...` (the last word is the one being completed)."""
    line = ["lxdkvm", *words]
    started = time.monotonic()
    proc = subprocess.run([SCRIPT], check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "_LXDKVM_COMPLETE": "bash_complete",
                               "COMP_WORDS": " ".join(line), "COMP_CWORD": str(len(line) - 1), **(env or {})})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stdout.splitlines() if line], time.monotonic() - started


def test_completion_offers_labs_and_hosts_from_lxd(before, ready_image):
    offered, seconds = complete("status", "")
    assert f"plain,{NAME}" in offered and "file," in offered
    assert seconds < 3, f"completion took {seconds:.1f}s"
    offered, _ = complete("status", "outp")
    assert f"plain,{NAME}" in offered
    offered, _ = complete("exec", "--lab", NAME, "")
    assert [o for o in offered if o.startswith("plain,")] == [f"plain,{h}" for h in HOSTS]
    offered, _ = complete("shell", "--lab", str(LAB), "out-2")
    assert offered == ["plain,out-2"]
    offered, _ = complete("shell", "--lab", "no-such-lab", "")
    assert offered == []


def test_completion_without_lxd_offers_files_and_no_error(before):
    offered, seconds = complete("status", "", env={"LXD_DIR": "/nonexistent"})
    assert offered == ["file,"] and seconds < 3
    offered, _ = complete("exec", "--lab", NAME, "", env={"LXD_DIR": "/nonexistent"})
    assert offered == []


def test_the_bash_completion_script_is_served():
    proc = subprocess.run([SCRIPT], check=False, capture_output=True, text=True,
                          env={**os.environ, "_LXDKVM_COMPLETE": "bash_source"})
    assert "complete -o nosort -F _lxdkvm_completion lxdkvm" in proc.stdout
