"""Launch a KVM host container and wait until it is truly ready, stage by stage.

Readiness is a list of named stages (data); each is polled until it passes or its time runs out, and
a failure names the host, the stage and shows the last lines of the log that explains it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import kvmprobe
from .errors import LxdkvmError

if TYPE_CHECKING:
    from .lxd import Lxd

PROBE_PATH = "/usr/local/lib/lxdkvm/kvmprobe.py"
QEMU_USER = "libvirt-qemu"

WAITING = "… "  # prefix of "now waiting for this stage" reports
EXEC_SLICE = 10  # seconds one readiness command may block
Report = Callable[[str, str], None]  # (host, message)


@dataclass(frozen=True)
class Stage:
    name: str
    command: list[str]
    timeout: float
    log: tuple[str, ...] = ()  # command whose output explains a failure
    expect: str = ""  # regular expression the output must match (multi-line: ^ and $ are lines)
    fatal_codes: tuple[int, ...] = ()  # exit codes that mean "failed for good", not "not yet"
    check: Callable[[str], str] | None = None  # output → "" when it passes, else what is missing
    fatal: Callable[[str], str] | None = None  # output → why it failed for good, or "" (not yet / passed)


class Cancelled(LxdkvmError):
    """Another host failed (or the user interrupted), so this one stopped waiting."""


def _until(condition: str, then: str) -> list[str]:
    """Wait inside the container (a shell loop, no exec or process start per poll), then report."""
    return ["sh", "-c", f"until {condition}; do sleep 0.1; done; {then}"]


RESULT_SEPARATOR = "--- result.json ---"


def _cloud_init_state(output: str) -> tuple[dict, dict] | None:
    """(status.json's stages, result.json's result) from the stage's output, or None while cloud-init has
    not written them (or is writing them)."""
    status_text, _, result_text = output.partition(RESULT_SEPARATOR)
    try:
        return json.loads(status_text)["v1"], json.loads(result_text)["v1"]
    except (ValueError, KeyError, TypeError):
        return None


def cloud_init_errors(output: str) -> str:
    """Errors cloud-init recorded, from its status.json and result.json (what `cloud-init status`
    reads, without starting a Python process that imports cloud-init: ~0.14 CPU-s per host)."""
    state = _cloud_init_state(output)
    if state is None:
        return ""  # not written yet (or mid-write): `cloud_init_done` says what is missing
    stages, result = state
    errors = [*result.get("errors", []),
              *(e for stage in stages.values() if isinstance(stage, dict) for e in stage.get("errors", []))]
    return "status: error: " + "; ".join(dict.fromkeys(errors)) if errors else ""


def cloud_init_done(output: str) -> str:
    """"" when cloud-init's last stage wrote its result and no stage is running, as `cloud-init status`
    says `done`; else what is missing."""
    state = _cloud_init_state(output)
    if state is None:
        return "cloud-init has not written its status and result yet"
    stages, _result = state
    running = [name for name, stage in stages.items()
               if isinstance(stage, dict) and stage.get("start") and not stage.get("finished")]
    if stages.get("stage") or running:
        return f"cloud-init still running ({stages.get('stage') or ', '.join(running)})"
    return ""


STAGES = [
    Stage("exec works", ["true"], 60),
    # /run/cloud-init/result.json appears when cloud-init's last stage ends (with or without errors)
    Stage("cloud-init finished",
          _until("[ -e /run/cloud-init/result.json ]",
                 f"cat /run/cloud-init/status.json; echo '{RESULT_SEPARATOR}'; cat /run/cloud-init/result.json"),
          900, ("tail", "-n", "12", "/var/log/cloud-init-output.log"),
          check=cloud_init_done, fatal=cloud_init_errors),
    Stage("libvirtd active", _until("systemctl is-active -q libvirtd.service",
                                    "systemctl is-active libvirtd.service"), 120,
          ("journalctl", "--no-pager", "-n", "12", "-u", "libvirtd.service"), expect=r"^active$"),
    Stage("kvm probe as qemu user", ["runuser", "-u", QEMU_USER, "--", "python3", PROBE_PATH], 60,
          expect=r"^kvm-probe: OK "),
]


class StageFailed(LxdkvmError):
    def __init__(self, host: str, stage: str, detail: str, log_tail: str) -> None:
        message = f"{host}: stage '{stage}' failed: {detail}"
        if log_tail:
            message += "\n" + "\n".join(f"    | {line}" for line in log_tail.splitlines())
        super().__init__(message)
        self.host, self.stage = host, stage


def push_probe(client: Lxd, name: str) -> None:
    client.execute(name, ["mkdir", "-p", str(Path(PROBE_PATH).parent)])
    client.push(name, PROBE_PATH, Path(kvmprobe.__file__).read_bytes(), mode="0755")


def _tail(client: Lxd, name: str, log: tuple[str, ...]) -> str:
    if not log:
        return ""
    try:
        return client.execute(name, list(log), timeout=30).stdout.rstrip()
    except LxdkvmError as exc:
        return f"(could not read the log: {exc})"


def _passes(stage: Stage, exit_code: int, output: str) -> tuple[bool, str]:
    detail = output.splitlines()[-1] if output else f"exit {exit_code}"
    if exit_code != 0 or re.search(stage.expect, output, re.MULTILINE) is None:
        return False, detail
    missing = stage.check(output) if stage.check else ""
    return not missing, missing or detail


def wait_ready(client: Lxd, name: str, report: Report = lambda _h, _m: None,
               stages: list[Stage] = STAGES, poll: float = 1.0,
               cancel: threading.Event | None = None) -> dict[str, float]:
    """Run the stages in order; return the seconds each took. Raises StageFailed, or Cancelled as
    soon as `cancel` is set (another host failed)."""
    took: dict[str, float] = {}
    for stage in stages:
        report(name, f"{WAITING}{stage.name}")
        if stage.name.startswith("kvm probe"):
            push_probe(client, name)
        start = time.monotonic()
        detail = ""
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{name}: stopped at stage '{stage.name}'")
            try:
                # short exec timeouts, so a blocking command (cloud-init status --wait) notices `cancel`
                left = stage.timeout - (time.monotonic() - start)
                result = client.execute(name, stage.command, timeout=max(2.0, min(left, EXEC_SLICE)))
                output = (result.stdout + result.stderr).strip()
                failed = stage.fatal(output) if stage.fatal and result.exit_code == 0 else ""
                if failed or result.exit_code in stage.fatal_codes:
                    detail = failed or _passes(stage, result.exit_code, output)[1]
                    raise StageFailed(name, stage.name, detail, _tail(client, name, stage.log))
                ok, detail = _passes(stage, result.exit_code, output)
                if ok:
                    break
            except StageFailed:
                raise
            except LxdkvmError as exc:  # exec not possible yet (container still booting)
                detail = str(exc)
            if time.monotonic() - start > stage.timeout:
                raise StageFailed(name, stage.name, f"timed out after {stage.timeout:.0f}s ({detail})",
                                  _tail(client, name, stage.log))
            time.sleep(poll)
        took[stage.name] = round(time.monotonic() - start, 1)
        report(name, f"{stage.name}: ok ({took[stage.name]}s)")
    report(name, "ready")
    return took


def launch(client: Lxd, name: str, image: str, profiles: list[str], report: Report = lambda _h, _m: None,
           config: dict[str, str] | None = None, pool: str | None = None,
           stages: list[Stage] = STAGES, poll: float = 1.0) -> dict[str, float]:
    """Create and start NAME (unless it exists) and wait until it is a ready KVM host."""
    if not client.instance_exists(name):
        report(name, f"creating from {image} with profiles {', '.join(profiles)}" + (f" on {pool}" if pool else ""))
        client.launch(name, image, profiles, config, pool)
    return wait_ready(client, name, report, stages, poll)


def launch_many(names: list[str], image: str, profiles: list[str], report: Report = lambda _h, _m: None,
                workers: int = 4, pool: str | None = None, stages: list[Stage] = STAGES,
                poll: float = 1.0) -> dict[str, dict[str, float]]:
    """Launch several hosts on a bounded pool (one LXD connection each); the first failure is raised
    after the others finish, so no host is left half-way without being reported."""
    from .lxd import Lxd  # here: the lab commands import this module for its stage names only

    def one(name: str) -> dict[str, float]:
        return launch(Lxd(), name, image, profiles, report, pool=pool, stages=stages, poll=poll)

    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as executor:
        futures = {name: executor.submit(one, name) for name in names}
    errors = [f.exception() for f in futures.values() if f.exception()]
    if errors:
        raise errors[0]
    return {name: f.result() for name, f in futures.items()}
