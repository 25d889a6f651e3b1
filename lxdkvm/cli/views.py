"""How the lab commands show things: per-host progress while hosts come up, a plan, a lab's status (once,
or live with --watch). Every name, state, address and message in them may come from a host, so each is
shown through `common.plain`/`common.safe`: escape sequences and markup are seen, never acted on."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Self

from rich.live import Live
from rich.table import Table

from ..errors import LxdkvmError
from ..hosts.readiness import WAITING
from .common import plain, safe, warn

if TYPE_CHECKING:
    from ..lab.plan import Plan
    from ..lab.status import LabStatus

VERB_STYLE = {"create": "green", "update": "yellow", "recreate": "magenta", "delete": "red",
              "start": "cyan", "verify": "cyan"}


class Progress:
    """Per-host, per-stage progress: a live table on a terminal, one line per change otherwise."""

    def __init__(self, console) -> None:
        self.console = console
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.hosts: dict[str, list] = {}  # host → [stage, since]
        self.live = Live(self._table(), console=console, refresh_per_second=4, transient=True) \
            if console.is_terminal else None

    def __enter__(self) -> Self:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table(header_style="bold", box=None)
        for column in ("host", "stage", "for"):
            table.add_column(column)
        now = time.monotonic()
        for host, (stage, since) in sorted(self.hosts.items()):
            style = "green" if stage == "ready" else ""
            table.add_row(safe(host), f"[{style}]{safe(stage)}[/]" if style else safe(stage),
                          f"{now - since:4.1f}s")
        return table

    def __call__(self, host: str, message: str) -> None:
        with self.lock:
            elapsed = time.monotonic() - self.start
            if host == "lab":
                self.console.print(f"[dim]· {elapsed:5.1f}s[/] {safe(message)}", highlight=False)
                return
            self.hosts[host] = [message, time.monotonic()]
            if self.live:
                self.live.update(self._table())
            elif not message.startswith(WAITING):
                self.console.print(f"[dim]· {elapsed:5.1f}s[/] {safe(host)}: {safe(message)}",
                                   highlight=False)


def print_plan(console, plan: Plan) -> None:
    """The plan as a table (its warnings, what hosts reported that was left out, on stderr)."""
    for warning in plan.warnings:
        warn(warning)
    if plan.empty:
        console.print(f"lab {safe(plan.lab)}: nothing to do, LXD already matches the lab file",
                      highlight=False)
        return
    table = Table(header_style="bold", title=f"plan for lab {safe(plan.lab)} (project {safe(plan.project)})")
    for column in ("action", "object", "name", "why"):
        table.add_column(column)
    for action in plan.actions:
        style = VERB_STYLE.get(action.verb, "")
        table.add_row(f"[{style}]{safe(action.verb)}[/]", safe(action.kind), safe(action.name),
                      safe(action.reason))
    console.print(table)
    for conflict in plan.conflicts:
        console.print(f"[bold red]conflict:[/] {safe(conflict)}", highlight=False)


def status_view(status: LabStatus):
    """The status of a lab as a rich renderable: a table of hosts (and their guests, when the status lists
    them) with state, readiness and addresses per network, then one line per network. What hosts and
    guests reported is shown as text, never as markup."""
    from rich.console import Group
    from rich.text import Text

    def text(value: str, style: str = "") -> Text:
        return Text(plain(value), style=style)

    if not status.exists:
        return text(f"lab {status.lab} is not up (no LXD project {status.project})")
    networks = [n.name for n in status.networks]
    table = Table(header_style="bold", title=text(f"lab {status.lab} (project {status.project})"))
    clustered = any(host.member for host in status.hosts)  # a single daemon shows no member column
    for column in ("host", *(["member"] if clustered else []), "state", "ready", *networks):
        table.add_column(text(column))
    for host in status.hosts:
        ready = Text("yes", style="green") if host.ready else Text("no", style="yellow")
        member = [text(host.member or "-")] if clustered else []
        table.add_row(text(host.name), *member, text(host.state), ready,
                      *[text(", ".join(host.addresses.get(n, [])) or "-") for n in networks])
        for guest in host.guests:  # guests run inside their host: one row each, under it
            booted = Text("booted", style="green") if guest.booted else Text("no", style="yellow")
            table.add_row(text(f"  └ {guest.name}"), *([""] * len(member)), text(guest.state), booted,
                          *[text(", ".join(guest.addresses.get(n, []))) for n in networks])
    lines = []
    for net in status.networks:
        lines.append(text(f"  network {net.name}: {net.subnet} on bridge {net.bridge} (gateway {net.gateway})"))
        lines += [text(f"    impaired towards {e.host}: {e.impairment.text()}", "yellow")
                  for e in status.impairments if e.network == net.name]
    return Group(table, *lines)


def print_status(console, status: LabStatus) -> None:
    """The status view; what it left out (`LabStatus.warnings`) as warnings on stderr."""
    for warning in status.warnings:
        warn(warning)
    console.print(status_view(status), highlight=False)


@contextmanager
def stoppable(then: Callable[[], None] | None = None):
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP all end a watch the same way, as KeyboardInterrupt (or, given
    THEN, by calling it: a capture asks its tcpdump to finish). SIGINT's handler is set explicitly: a
    process started in the background inherits SIGINT ignored."""
    def stop(_signum, _frame):
        if then is not None:
            then()
            return
        raise KeyboardInterrupt

    wanted = {signal.SIGINT: stop if then else signal.default_int_handler, signal.SIGTERM: stop,
              signal.SIGHUP: stop}
    before = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def watch_status(console, read: Callable[[], LabStatus], interval: float) -> None:
    """READ the status every INTERVAL seconds until Ctrl-C: a live view on a terminal; otherwise a new
    view, with the time, only when something changed. LXD failing for a moment is shown, not fatal."""
    live = Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None
    with stoppable():
        _watch(console, read, interval, live)


def _watch(console, read: Callable[[], LabStatus], interval: float, live: Live | None) -> None:
    from rich.console import Group
    from rich.text import Text

    last = None
    try:
        if live:
            live.start()
        while True:
            try:
                status, problem = read(), ""
            except LxdkvmError as exc:
                status, problem = None, str(exc)
            key = json.dumps([status.as_json() if status else None, problem], sort_keys=True)
            view = status_view(status) if status else Text(f"error: {plain(problem)}", style="red")
            if status and status.warnings:  # a view that repeats: its warnings are part of it
                view = Group(view, *(Text(f"warning: {plain(w)}", style="yellow") for w in status.warnings))
            stamp = time.strftime("%H:%M:%S")
            if live:
                footer = Text(f"{stamp} · every {interval:g}s · Ctrl-C to stop", style="dim")
                live.update(Group(view, footer), refresh=True)
            elif key != last:
                console.print(Text(f"· {stamp}", style="dim"), view, highlight=False)
            last = key
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            live.stop()
