"""Launch a KVM host container and wait until it is truly ready, stage by stage.

Readiness is a list of named stages (data); each is polled until it passes or its time runs out, and
a failure names the host, the stage and shows the last lines of the log that explains it.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import kvmprobe
from ..errors import LxdkvmError

if TYPE_CHECKING:
    from ..lxd.instances import Instances

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


def probe_command(user: str, *args: str) -> list[str]:
    """The KVM probe (lxdkvm/kvmprobe.py) run as USER: its source on the command line, so nothing is
    copied into the host (nor left there)."""
    return ["runuser", "-u", user, "--", "python3", "-c", Path(kvmprobe.__file__).read_text(), *args]


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
    Stage("kvm probe as qemu user", probe_command(QEMU_USER), 60, expect=r"^kvm-probe: OK "),
]


class StageFailed(LxdkvmError):
    """A readiness stage failed for good; the message ends with the last lines of the host's log. Both the
    detail and the log are the host's own text: control characters come out as visible escapes, and only
    the last LOG_LINES lines are kept."""

    LOG_LINES = 30

    def __init__(self, host: str, stage: str, detail: str, log_tail: str) -> None:
        from ..readback import shown

        message = f"{host}: stage '{stage}' failed: {shown(detail, 600, 3)}"
        if log_tail:
            tail = shown(log_tail, 6000, self.LOG_LINES).split("\n")
            message += "\n" + "\n".join(f"    | {line}" for line in tail)
        super().__init__(message)
        self.host, self.stage = host, stage


def _tail(client: Instances, name: str, log: tuple[str, ...]) -> str:
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


def _verdict(stage: Stage, exit_code: int, output: str) -> tuple[str, str]:
    """("ok" | "failed" (for good) | "not yet", detail) of one run of STAGE's command."""
    failed = stage.fatal(output) if stage.fatal and exit_code == 0 else ""
    if failed or exit_code in stage.fatal_codes:
        return "failed", failed or _passes(stage, exit_code, output)[1]
    ok, detail = _passes(stage, exit_code, output)
    return ("ok" if ok else "not yet"), detail


BATCH_MARK = "@@lxdkvm-stage-end"


def _all_at_once(client: Instances, name: str, stages: list[Stage]) -> list[tuple[int, str, float]]:
    """Run the stages' commands one after another in ONE exec, for as long as each exits 0: (exit code,
    output, seconds) of each that ran. A ready host then costs one exec (six requests to the daemon)
    instead of one or more per stage."""
    steps = "".join(f"{shlex.join(stage.command)} 2>&1; rc=$?; echo; echo {BATCH_MARK} $rc $(date +%s.%N); "
                    "[ $rc = 0 ] || exit 0; " for stage in stages)
    result = client.execute(name, ["sh", "-c", f"echo {BATCH_MARK} 0 $(date +%s.%N); {steps}"],
                            timeout=EXEC_SLICE)
    return batch_results(result.stdout)


def batch_results(stdout: str) -> list[tuple[int, str, float]]:
    """(exit code, output, seconds) of each command that ended, from `_all_at_once`'s output: a mark line
    with the time before the first, then each command's output followed by a mark line with its exit
    code and the time. A command cut off (the exec's time ran out) has no mark and is left out."""
    ran: list[tuple[int, str, float]] = []
    lines: list[str] = []
    last = None
    for line in stdout.splitlines():
        if not line.startswith(BATCH_MARK + " "):
            lines.append(line)
            continue
        _mark, code, stamp = line.split()
        if last is not None:
            ran.append((int(code), "\n".join(lines).strip(), round(float(stamp) - last, 1)))
        last, lines = float(stamp), []
    return ran


def _still_running(client: Instances, name: str, stage: Stage) -> None:
    """Raise StageFailed at once, with the console's last lines, when the host is no longer running (it
    stopped or crashed while its stages were awaited): waiting out the stage's timeout would change nothing."""
    try:
        status = client.info(name)["status"]
    except LxdkvmError:
        return
    if status in ("Stopped", "Error"):
        raise StageFailed(name, stage.name, f"the host is {status.lower()}: it stopped while it was awaited",
                          client.console_log(name))


def wait_ready(client: Instances, name: str, report: Report = lambda _h, _m: None,
               stages: list[Stage] = STAGES, poll: float = 1.0,
               cancel: threading.Event | None = None) -> dict[str, float]:
    """Run the stages in order; return the seconds each took. Raises StageFailed, or Cancelled as
    soon as `cancel` is set (Ctrl-C).

    First every stage in one exec (`_all_at_once`): a host that is ready, or soon is, passes them all
    there. From the first stage that did not pass (or when exec is not possible yet), stage by stage:
    each polled until it passes, fails for good or runs out of time."""
    took: dict[str, float] = {}
    done = 0
    if stages and not (cancel is not None and cancel.is_set()):
        report(name, f"{WAITING}{stages[0].name} … {stages[-1].name} (checked together)")
        try:
            ran = _all_at_once(client, name, stages)
        except LxdkvmError:  # exec not possible yet (container still booting)
            ran = []
        for stage, (code, output, seconds) in zip(stages, ran, strict=False):
            verdict, detail = _verdict(stage, code, output)
            if verdict == "failed":
                raise StageFailed(name, stage.name, detail, _tail(client, name, stage.log))
            if verdict != "ok":
                break
            took[stage.name] = seconds
            report(name, f"{stage.name}: ok ({seconds}s)")
            done += 1
    for stage in stages[done:]:
        report(name, f"{WAITING}{stage.name}")
        start = time.monotonic()
        detail = ""
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{name}: stopped at stage '{stage.name}'")
            try:
                # short exec timeouts, so a blocking command (cloud-init status --wait) notices `cancel`
                left = stage.timeout - (time.monotonic() - start)
                result = client.execute(name, stage.command, timeout=max(2.0, min(left, EXEC_SLICE)))
                verdict, detail = _verdict(stage, result.exit_code, (result.stdout + result.stderr).strip())
                if verdict == "failed":
                    raise StageFailed(name, stage.name, detail, _tail(client, name, stage.log))
                if verdict == "ok":
                    break
            except StageFailed:
                raise
            except LxdkvmError as exc:  # exec not possible yet (container still booting), or no more
                detail = str(exc)
                _still_running(client, name, stage)
            if time.monotonic() - start > stage.timeout:
                raise StageFailed(name, stage.name, f"timed out after {stage.timeout:.0f}s ({detail})",
                                  _tail(client, name, stage.log))
            time.sleep(poll)
        took[stage.name] = round(time.monotonic() - start, 1)
        report(name, f"{stage.name}: ok ({took[stage.name]}s)")
    report(name, "ready")
    return took


def launch(client: Instances, name: str, image: str, profiles: list[str], report: Report = lambda _h, _m: None,
           config: dict[str, str] | None = None, pool: str | None = None,
           stages: list[Stage] = STAGES, poll: float = 1.0) -> dict[str, float]:
    """Create and start NAME (unless it exists) and wait until it is a ready KVM host."""
    if not client.exists(name):
        report(name, f"creating from {image} with profiles {', '.join(profiles)}" + (f" on {pool}" if pool else ""))
        client.launch(name, image, profiles, config, pool)
    return wait_ready(client, name, report, stages, poll)


def launch_many(client: Instances, names: list[str], image: str, profiles: list[str],
                report: Report = lambda _h, _m: None, workers: int = 4, pool: str | None = None,
                stages: list[Stage] = STAGES, poll: float = 1.0) -> dict[str, dict[str, float]]:
    """Launch several hosts on a bounded pool; the first failure is raised after the others finish, so no
    host is left half-way without being reported."""
    def one(name: str) -> dict[str, float]:
        return launch(client, name, image, profiles, report, pool=pool, stages=stages, poll=poll)

    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as executor:
        futures = {name: executor.submit(one, name) for name in names}
    errors = [f.exception() for f in futures.values() if f.exception()]
    if errors:
        raise errors[0]
    return {name: f.result() for name, f in futures.items()}
