"""Run one of lxdkvm's playbooks (playbooks/) against a lab that is up, with ansible-playbook from this
Python environment, over the lab's inventory (`inventory.live`) and its checked host keys.

Returns what happened or raises PlaybookFailed; output lines go to a callback, never to the terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LxdkvmError
from ..templating import data_dir

RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")


class PlaybookFailed(LxdkvmError):
    """ansible-playbook exited non-zero; the message has its last lines."""


@dataclass
class PlaybookRun:
    playbook: Path
    seconds: float
    recap: dict[str, dict[str, int]]  # host → ok, changed, unreachable, failed
    output: str


def playbooks_dir() -> Path:
    return data_dir("playbooks")


def executable(name: str = "ansible-playbook") -> str:
    """NAME from this Python's environment (where lxdkvm, which the inventory needs, is installed)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise LxdkvmError(f"{name} is not installed in this environment (ansible-core is a dependency of "
                          "lxdkvm: reinstall lxdkvm)")
    return found


def environment() -> dict[str, str]:
    """Ansible's settings from playbooks/ansible.cfg, whatever the current directory."""
    return {**os.environ, "ANSIBLE_CONFIG": str(playbooks_dir() / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0"}


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for line in output.splitlines():
        if match := RECAP.match(line.strip()):
            recap[match["host"]] = {k: int(match[k]) for k in ("ok", "changed", "unreachable", "failed")}
    return recap


def playbook_path(playbook: str) -> Path:
    """PLAYBOOK as an absolute path: a playbook file (relative to the current directory: ansible-playbook
    runs in playbooks/), else one of lxdkvm's playbooks by name."""
    path = Path(playbook).resolve() if Path(playbook).is_file() else playbooks_dir() / playbook
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in playbooks_dir().glob("*.yml")))
        raise LxdkvmError(f"no playbook {playbook} (lxdkvm's playbooks: {known})")
    return path


def run_playbook(session, lab: str | Path | None, playbook: str = "site.yml", extra_args: tuple[str, ...] = (),
                 on_line: Callable[[str], None] = lambda _line: None,
                 on_warning: Callable[[str], None] = lambda _message: None) -> PlaybookRun:
    """Run PLAYBOOK (a name in playbooks/, or a path) against LAB; each output line goes to ON_LINE, each
    warning about the inventory (what hosts reported that was left out) to ON_WARNING first."""
    from ..outputs import inventory

    path = playbook_path(playbook)
    found = inventory.live(session, lab)  # read once: the playbook sees one state
    for warning in found.warnings:
        on_warning(warning)
    hosts = inventory.render(found, "yaml")  # every string !unsafe: Ansible never templates what hosts said
    start = time.monotonic()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lxdkvm-inventory-") as tmp:
        source = Path(tmp) / "inventory.yml"
        source.write_text(hosts)
        command = [executable(), "-i", str(source), str(path), *extra_args]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment(), cwd=playbooks_dir()) as proc:
            for line in proc.stdout or ():
                lines.append(line.rstrip("\n"))
                on_line(lines[-1])
        output = "\n".join(lines)
    run = PlaybookRun(path, round(time.monotonic() - start, 1), parse_recap(output), output)
    if proc.returncode != 0:
        tail = "\n".join(f"    | {line}" for line in lines[-15:])
        raise PlaybookFailed(f"ansible-playbook {path.name} failed (exit {proc.returncode}) after "
                             f"{run.seconds}s:\n{tail}")
    return run
