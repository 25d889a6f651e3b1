"""Several shell commands in one exec, each answer kept apart: a command line costs a round trip to the
daemon (about 40 ms here), so checks that read a few things from one instance read them at once.

What comes back is what the instance printed: a caller treats every answer as untrusted text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .instances import Instances

_SECTION = "@@lxdkvm-section "
_EXIT = "@@lxdkvm-exit "


def batch_script(commands: dict[str, str]) -> str:
    """One shell script that runs each named command in a subshell of its own (so an `exit` ends only it;
    stderr with stdout) and marks where its output starts and with which code it ended."""
    return "\n".join(f"echo '{_SECTION}{name}'; ( {command}\n) 2>&1; echo \"{_EXIT}$?\""
                     for name, command in commands.items())


def batch_answers(text: str) -> dict[str, tuple[int, str]]:
    """What `batch_script` printed: name → (exit code, output). An instance writes this text, so a section
    it did not print, or printed twice, or without an exit code, comes back as (-1, what there was)."""
    found: dict[str, tuple[int, str]] = {}
    name, lines = None, []
    for line in text.splitlines():
        if line.startswith(_SECTION):
            name, lines = line[len(_SECTION):], []
        elif line.startswith(_EXIT) and name is not None:
            code = line[len(_EXIT):]
            found.setdefault(name, (int(code) if code.isdigit() else -1, "\n".join(lines)))
            name = None
        elif name is not None:
            lines.append(line)
    return found


def run_batch(client: Instances, host: str, commands: dict[str, str],
              timeout: float = 120) -> dict[str, tuple[int, str]]:
    """Each of COMMANDS (name → shell line) run in HOST in one exec: name → (exit code, output), (-1, "")
    for one whose answer did not come back."""
    result = client.execute(host, ["sh", "-c", batch_script(commands)], timeout=timeout)
    answers = batch_answers(result.stdout)
    return {name: answers.get(name, (-1, "")) for name in commands}
