"""lxdkvm from Python: `Lab`, a lab you can bring up, read, run commands in and take down from your own
tools and tests, running the same library functions the `lxdkvm` commands run (`lab.pipeline`,
`lab.guests`, `lxd.instances`), with the same checks and the same errors:

    from lxdkvm import Lab

    lab = Lab.load("my-lab.yaml")   # checked like `lxdkvm plan`: LabInvalid with every file:line and key
    lab.up()                        # `lxdkvm up`
    print(lab.status().host("kvm-1").addresses)
    assert lab.exec("kvm-1", ["virsh", "list"]).ok
    lab.down()                      # `lxdkvm down`

It prints nothing: progress goes to the `report` callback given to `Lab.load`/`Lab.attach` (host or "lab",
message: what `lxdkvm up` shows), and what hosts reported that was left out (readback) to `on_warning`
and into `Lab.warnings`. Errors are `LxdkvmError` (`LabInvalid` for a lab file, with `.problems`).

Importing this module is cheap: pylxd, pydantic and Jinja are imported by the first call that needs them.
Text read back from hosts and guests (`ExecResult.stdout`, a status's names) is untrusted: show it through
`lxdkvm.readback.shown` before printing it to a terminal.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LxdkvmError
from .labfile import topology as t
from .labfile.confine import Allowances

if TYPE_CHECKING:
    from .lab.pipeline import UpResult
    from .lab.plan import Plan
    from .lab.status import LabStatus
    from .lab.verify import Check
    from .settings import Settings
    from .snapshots.record import Snapshot

Report = Callable[[str, str], None]  # (host name or "lab", message): progress, as `lxdkvm up` shows it
Warn = Callable[[str], None]
__all__ = ["Allowances", "ExecResult", "Lab", "LabInvalid", "LxdkvmError", "Migration", "Report"]
LabInvalid = t.LabInvalid


def _quiet(_scope: str, _message: str) -> None:
    """The default reporter: says nothing."""


def argv(command: str | Sequence[str]) -> list[str]:
    """COMMAND as an argument list: a list as it is, a string through `sh -c` (so `"a && b"` works)."""
    if isinstance(command, str):
        if not command.strip():
            raise LxdkvmError("empty command")
        return ["sh", "-c", command]
    args = [str(a) for a in command]
    if not args:
        raise LxdkvmError("empty command")
    return args


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a lab host or guest did. Its output is what the host or guest printed:
    untrusted text."""
    command: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> ExecResult:
        """This result when the command succeeded; else LxdkvmError with its exit code and stderr's end."""
        if not self.ok:
            from .readback import shown

            raise LxdkvmError(f"{shlex.join(self.command)} exited {self.exit_code}: "
                              f"{shown(self.stderr.strip(), 500, 5) or '(no stderr)'}")
        return self


@dataclass(frozen=True)
class Migration:
    """A guest moved to another host (`lxdkvm migrate --json`, typed). `raw` is that whole document."""
    guest: str
    source: str  # the host it left
    target: str  # the host it runs on now
    over: str  # the target's address the migration went to (an isolated lab network)
    live: bool
    seconds: float
    downtime_ms: float | None
    same_boot: bool | None  # None: an imported image without lxdkvm's agent (boot id not compared)
    running: bool
    address: str | None  # the guest's address, pinged during and after the move
    address_answers: bool
    pings_sent: int
    pings_lost: int
    boot_id_before: str = ""
    boot_id_after: str = ""
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_result(cls, result: dict) -> Migration:
        """From the dict `guests.migration.migrate` returns."""
        return cls(guest=result["guest"], source=result["from"], target=result["to"], over=result["over"],
                   live=bool(result["live"]), seconds=float(result["seconds"]),
                   downtime_ms=result.get("downtime_ms"), same_boot=result.get("same_boot"),
                   running=bool(result.get("running")), address=result.get("address") or None,
                   address_answers=bool(result.get("address_answers")),
                   pings_sent=int(result.get("pings_sent") or 0), pings_lost=int(result.get("pings_lost") or 0),
                   boot_id_before=result.get("boot_id_before") or "", boot_id_after=result.get("boot_id_after") or "",
                   raw=dict(result))

    @property
    def kept_running(self) -> bool:
        """Same boot id after the move (without an agent to ask: still running)."""
        from .guests.migration import kept_running

        return kept_running(self._document())

    @property
    def ok(self) -> bool:
        """What `lxdkvm migrate` exits 0 for: kept running, and its address (if it has one) answers."""
        from .guests.migration import succeeded

        return succeeded(self._document())

    def _document(self) -> dict:
        return {"same_boot": self.same_boot, "running": self.running, "address": self.address,
                "address_answers": self.address_answers}


class Lab:
    """A lab: its file (checked), and the commands on it. Make one with `Lab.load(file)` or, for a lab that
    is up, `Lab.attach(name)`. Each method talks to the daemon through one session kept by the object."""

    def __init__(self, definition: t.Lab, path: Path | None, *, settings: Settings | None = None,
                 allow: Allowances | None = None, report: Report | None = None,
                 on_warning: Warn | None = None) -> None:
        self.definition = definition  # the checked lab file (lxdkvm.labfile.topology.Lab)
        self.path = path  # the file `up` and `plan` read; None for the embedded default lab
        self.allow = allow or Allowances()
        self.report: Report = report or _quiet
        self.warnings: list[str] = []  # what hosts reported that was left out, in the order said
        self._on_warning = on_warning
        self._settings = settings
        self._session = None

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, path={str(self.path) if self.path else None!r})"

    # ------------------------------------------------------------------ making one
    @classmethod
    def load(cls, path: str | Path | None, *, settings: Settings | None = None, allow: Allowances | None = None,
             report: Report | None = None, on_warning: Warn | None = None) -> Lab:
        """The lab in the file PATH (None: the embedded default lab), checked exactly as `lxdkvm plan` and
        `lxdkvm up` check it, against this machine and the daemon. Raises `LabInvalid` (every problem with
        its file, line and key; `.problems`, `.report()`) and changes nothing."""
        from .lab.load import load

        lab = cls(None, Path(path) if path is not None else None, settings=settings, allow=allow, report=report,
                  on_warning=on_warning)
        lab.definition = load(path, lab.session, lab.allow)
        return lab

    @classmethod
    def attach(cls, name: str, *, settings: Settings | None = None, report: Report | None = None,
               on_warning: Warn | None = None) -> Lab:
        """The lab NAME that is up, from the file its last `up` used. Raises LxdkvmError when it is not up."""
        from .lab import pipeline
        from .lab.load import LAB_COPY, remembered
        from .lab.state import path as state_path

        lab = cls(None, None, settings=settings, report=report, on_warning=on_warning)
        if not pipeline.status(lab.session, name, guests=False).exists:
            raise LxdkvmError(f"lab {name} is not up (`lxdkvm up` first)")
        lab.definition = remembered(lab.session, name)
        lab.path = state_path(lab.definition.name) / LAB_COPY
        return lab

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def project(self) -> str:
        """The LXD project the lab lives in (`lxc list --project PROJECT`)."""
        return t.project_name(self.name)

    @property
    def session(self):
        """The `lxd.session.Session` this lab's calls share (opened at first use)."""
        if self._session is None:
            from .lxd.session import Session

            self._session = Session(self._settings)
        return self._session

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._on_warning:
            self._on_warning(message)

    def _say(self, message: str) -> None:
        self.report("lab", message)

    # ------------------------------------------------------------------ the lab
    def plan(self) -> Plan:
        """What `up` would create, change or delete, and why (`lxdkvm plan`). Changes nothing. `.empty`:
        the lab is up as its file says."""
        from .lab import pipeline

        _lab, the_plan = pipeline.plan(self.session, self.path, self.allow)
        for warning in the_plan.warnings:
            self._warn(warning)
        return the_plan

    def up(self, workers: int = 10) -> UpResult:
        """Make the lab real (`lxdkvm up`): create, change or delete what the plan says, in parallel, and
        wait until every host and guest is ready. A no-op when the lab is up as its file says."""
        from .lab import pipeline

        result = pipeline.up(self.session, self.path, self.report, workers, self.allow)
        self.definition = result.lab
        for warning in result.plan.warnings:
            self._warn(warning)
        return result

    def status(self, guests: bool = True) -> LabStatus:
        """The lab as the daemon has it now (`lxdkvm status --json`, typed): `.exists`, `.hosts` (state,
        readiness, addresses per network, guests), `.networks`, `.host(name)`, `.guests`."""
        from .lab import pipeline

        found = pipeline.status(self.session, self.name, guests)
        for warning in found.warnings:
            self._warn(warning)
        return found

    def verify(self) -> list[Check]:
        """Prove the running lab (`lxdkvm verify`): one `Check` per row (scope, name, result PASS/WARN/FAIL,
        evidence)."""
        from .lab import pipeline

        _lab, checks = pipeline.verify(self.session, self.path or self.name, self._say)
        return checks

    def down(self) -> Plan:
        """Delete the lab (`lxdkvm down`): its hosts, guests, profiles, networks and project, nothing else.
        Returns what was deleted (an empty plan: nothing was there)."""
        from .lab import pipeline

        the_plan, _seconds = pipeline.down(self.session, self.name, self.report)
        return the_plan

    # ------------------------------------------------------------------ hosts and guests
    def exec(self, host: str, command: str | Sequence[str], timeout: float | None = None) -> ExecResult:
        """Run COMMAND (a list, or a string for `sh -c`) as root on lab host HOST and collect its output
        (`lxdkvm exec --lab LAB HOST -- CMD`, without a terminal). Killed after TIMEOUT seconds."""
        from .lxd.interactive import check_host

        args = argv(command)
        check_host(self.session, self.project, host)
        found = self.session.lab(self.project).instances.execute(host, args, timeout=timeout)
        return ExecResult(tuple(args), found.exit_code, found.stdout, found.stderr)

    def guest_exec(self, guest: str, command: str | Sequence[str], timeout: float = 60) -> ExecResult:
        """Run COMMAND in GUEST through lxdkvm's agent in it (`lxdkvm guest-exec`)."""
        from .lab import guests as lab_guests

        args = argv(command)
        stdout, stderr, code = lab_guests.guest_exec(self.session, self.name, guest, args, timeout, self._warn)
        return ExecResult(tuple(args), code, stdout, stderr)

    def migrate(self, guest: str, to: str, live: bool = True, max_downtime_ms: int | None = None) -> Migration:
        """Move running GUEST to host TO (`lxdkvm migrate --json`, typed): live (pre-copy) or paused, over an
        isolated lab network, its disk copied; then checked (boot id, address answering, pings lost).
        `Migration.ok` is what the command's exit status says; a failed move raises LxdkvmError."""
        from .lab import guests as lab_guests

        result = lab_guests.migrate(self.session, self.name, guest, to, live, self._say, self._warn,
                                    max_downtime_ms)
        return Migration.from_result(result)

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, name: str | None = None) -> Snapshot:
        """Snapshot the whole lab (`lxdkvm snapshot`): every running guest's memory saved, every host
        snapshotted, the guests resumed. NAME defaults to s-DATE-TIME; the snapshot taken is returned."""
        from .snapshots import lab as snapshots

        return snapshots.take(self.session, self.name, name, self.report)

    def snapshots(self) -> list[Snapshot]:
        """The lab's snapshots, oldest first (`lxdkvm snapshot list`)."""
        from .snapshots import lab as snapshots

        return snapshots.listing(self.name)

    def restore(self, name: str) -> list[str]:
        """Bring the lab back to snapshot NAME (`lxdkvm restore`): every host as it was, every guest that was
        running resumed from its memory on the host it was on. Returns what differed from the lab file in
        force (each with what the restore did about it)."""
        from .snapshots import lab as snapshots

        return snapshots.restore(self.session, self.name, name, self.report).differences
