"""`lxdkvm up|plan|down|status|exec|shell`: the lab commands. Parse, call `lab`, print.

Each command imports `lab` (pylxd, pydantic, Jinja behind it) when it runs, not when `lxdkvm` starts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

import click
from rich.live import Live
from rich.table import Table

from ..hosts.readiness import WAITING
from ..labfile import topology as t

if TYPE_CHECKING:
    from ..lab.plan import Plan

LAB_HELP = "A lab file, or the name of a lab that is up [default: the embedded default lab]."
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
            table.add_row(host, f"[{style}]{stage}[/]" if style else stage, f"{now - since:4.1f}s")
        return table

    def __call__(self, host: str, message: str) -> None:
        with self.lock:
            elapsed = time.monotonic() - self.start
            if host == "lab":
                self.console.print(f"[dim]· {elapsed:5.1f}s[/] {message}", highlight=False)
                return
            self.hosts[host] = [message, time.monotonic()]
            if self.live:
                self.live.update(self._table())
            elif not message.startswith(WAITING):
                self.console.print(f"[dim]· {elapsed:5.1f}s[/] {host}: {message}", highlight=False)


def print_plan(console, plan: Plan) -> None:
    if plan.empty:
        console.print(f"lab {plan.lab}: nothing to do, LXD already matches the lab file")
        return
    table = Table(header_style="bold", title=f"plan for lab {plan.lab} (project {plan.project})")
    for column in ("action", "object", "name", "why"):
        table.add_column(column)
    for action in plan.actions:
        style = VERB_STYLE.get(action.verb, "")
        table.add_row(f"[{style}]{action.verb}[/]", action.kind, action.name, action.reason)
    console.print(table)
    for conflict in plan.conflicts:
        console.print(f"[bold red]conflict:[/] {conflict}", highlight=False)


def status_view(status: dict):
    """The status of a lab as a rich renderable: a table of hosts (and their guests, when the status lists
    them) with state, readiness and addresses per network, then one line per network."""
    from rich.console import Group
    from rich.text import Text

    if not status["exists"]:
        return Text(f"lab {status['lab']} is not up (no LXD project {status['project']})")
    networks = [n["name"] for n in status["networks"]]
    table = Table(header_style="bold", title=f"lab {status['lab']} (project {status['project']})")
    clustered = any(host.get("member") for host in status["hosts"])  # a single daemon shows no member column
    for column in ("host", *(["member"] if clustered else []), "state", "ready", *networks):
        table.add_column(column)
    for host in status["hosts"]:
        ready = "[green]yes[/]" if host["ready"] else "[yellow]no[/]"
        table.add_row(host["name"], *([host.get("member") or "-"] if clustered else []), host["state"], ready,
                      *[", ".join(host["addresses"].get(n, [])) or "-" for n in networks])
        for guest in host.get("guests", []):  # guests run inside their host: one row each, under it
            booted = "[green]booted[/]" if guest.get("booted") else "[yellow]no[/]"
            table.add_row(f"  └ {guest['name']}", *([""] if clustered else []), guest.get("state", "?"), booted,
                          *[", ".join(guest.get("addresses", {}).get(n, [])) for n in networks])
    lines = [Text(f"  network {net['name']}: {net['subnet']} on bridge {net['bridge']} "
                  f"(gateway {net['gateway']})") for net in status["networks"]]
    return Group(table, *lines)


def print_status(console, status: dict) -> None:
    console.print(status_view(status), highlight=False)


def watch_status(console, read: Callable[[], dict], interval: float) -> None:
    """READ the status every INTERVAL seconds until Ctrl-C: a live view on a terminal; otherwise a new
    view, with the time, only when something changed. LXD failing for a moment is shown, not fatal."""
    from rich.console import Group
    from rich.text import Text

    from ..errors import LxdkvmError

    last = None
    live = Live(console=console, auto_refresh=False, transient=False) if console.is_terminal else None
    try:
        if live:
            live.start()
        while True:
            try:
                status, problem = read(), ""
            except LxdkvmError as exc:
                status, problem = None, str(exc)
            key = json.dumps([status, problem], sort_keys=True)
            view = status_view(status) if status else Text(f"error: {problem}", style="red")
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


ALLOW_FLAGS = {  # flag → help; each lifts one class of refusal (docs/labs.md: what each one exposes)
    "unconfined": "Allow config that undoes the hosts' confinement (security.privileged, raw.*, "
                  "security.idmap.*, linux.kernel_modules, syscall interception, ...). "
                  "Only for lab files you trust.",
    "host-devices": "Allow lab profile devices that reach this machine (disk, unix-*, gpu, usb, pci, proxy, "
                    "NICs off the lab's networks, ...). Only for lab files you trust.",
    "cgnat": "Allow lab subnets in 100.64.0.0/10 (carrier-grade NAT, also used by Tailscale and other VPNs).",
}


def allow_options(command):
    """The --allow-* flags of `plan` and `up`, as parameters allow_unconfined, allow_host_devices, ..."""
    for flag, help_text in reversed(ALLOW_FLAGS.items()):
        command = click.option(f"--allow-{flag}", f"allow_{flag.replace('-', '_')}", is_flag=True,
                               help=help_text)(command)
    return command


def allowances(lab_mod, flags: dict[str, bool]):
    return lab_mod.Allowances(**{name.removeprefix("allow_"): on for name, on in flags.items()})


def register(main: click.Group, out, err, errors) -> None:
    @main.command(epilog="Example: lxdkvm plan labs/default.yaml")
    @click.argument("lab", required=False)
    @allow_options
    def plan(lab, **allow) -> None:
        """Show what `up` would create, change or delete, and why. Changes nothing."""
        from ..lab import pipeline as lab_mod

        with errors():
            _, the_plan = lab_mod.plan(lab, allowances(lab_mod, allow))
        print_plan(out, the_plan)
        sys.exit(1 if the_plan.conflicts else 0)

    @main.command(epilog="Example: lxdkvm up labs/default.yaml --workers 4")
    @click.argument("lab", required=False)
    @click.option("--workers", default=10, show_default=True, help="Hosts created and checked at once.")
    @click.option("--provision", is_flag=True, help="Then run playbooks/site.yml against the lab with "
                  "Ansible (docs/ansible.md).")
    @allow_options
    def up(lab, workers, provision, **allow) -> None:
        """Make the lab real: validate, plan, create in parallel, wait until every host is ready."""
        from ..lab import pipeline as lab_mod

        with errors(), Progress(err) as progress:
            result = lab_mod.up(lab, progress, workers, allowances(lab_mod, allow))
        guests = f" and {len(result.lab.guests)} guests" if result.lab.guests else ""
        if result.plan.empty:
            out.print(f"lab {result.lab.name}: nothing to do, {len(result.lab.hosts)} hosts{guests} are up "
                      "and ready")
        else:
            print_plan(out, result.plan)
            seconds = result.applied.seconds + (result.guests.seconds if result.guests else 0)
            out.print(f"lab {result.lab.name} is up: {len(result.lab.hosts)} hosts{guests} ready in {seconds:.1f}s")
        with errors():
            print_status(out, lab_mod.status(result.lab.name))
        if provision:
            run_playbook(result.lab.name, "site.yml")

    @main.command(epilog="Example: lxdkvm down default   (or: lxdkvm down labs/default.yaml)")
    @click.argument("lab", required=False)
    def down(lab) -> None:
        """Delete the lab: its hosts, profiles, networks and project, and nothing else."""
        from ..lab import pipeline as lab_mod

        with errors(), Progress(err) as progress:
            the_plan, seconds = lab_mod.down(lab, progress)
        if not the_plan.actions:
            out.print(f"lab {the_plan.lab}: nothing to delete")
        else:
            hosts = len(the_plan.select("host"))
            out.print(f"lab {the_plan.lab} is down: deleted {hosts} hosts, "
                      f"{len(the_plan.select('network'))} networks and project {the_plan.project} in {seconds}s")

    @main.command(epilog="Example: lxdkvm status default --watch --interval 1")
    @click.argument("lab", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
    @click.option("--watch", is_flag=True, help="Keep showing the status, refreshed, until Ctrl-C (not a "
                  "terminal: a new table only when something changed).")
    @click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
                  help="Seconds between refreshes with --watch.")
    def status(lab, as_json, watch, interval) -> None:
        """Hosts of the lab, their state, addresses per network and readiness."""
        from ..lab import pipeline as lab_mod

        if watch:
            with errors():
                lab_mod.lab_name(lab)  # a bad file or name is an error now, not a view that repeats it
            watch_status(out, lambda: lab_mod.status(lab), interval)
            return
        with errors():
            result = lab_mod.status(lab)
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            print_status(out, result)

    @main.command(name="exec", context_settings={"ignore_unknown_options": True},
                  epilog="Example: lxdkvm exec --lab default kvm-1 -- virsh list --all")
    @click.option("--lab", "lab", help=LAB_HELP)
    @click.argument("host")
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    def exec_(lab, host, command) -> None:
        """Run COMMAND on a lab host: lxdkvm exec [--lab LAB] HOST -- CMD..."""
        from ..lab import pipeline as lab_mod
        from ..lxd import exec_interactive

        with errors():
            exec_interactive(t.project_name(lab_mod.lab_name(lab)), host, list(command))

    @main.command(epilog="Example: lxdkvm shell --lab default kvm-2")
    @click.option("--lab", "lab", help=LAB_HELP)
    @click.argument("host")
    def shell(lab, host) -> None:
        """Open a login shell on a lab host."""
        from ..lab import pipeline as lab_mod
        from ..lxd import exec_interactive

        with errors():
            exec_interactive(t.project_name(lab_mod.lab_name(lab)), host, ["su", "-l"])

    def run_playbook(lab, playbook: str) -> None:
        from ..clients import ansible

        with errors():
            run = ansible.run_playbook(lab, playbook, on_line=click.echo)
        changed = sum(r["changed"] for r in run.recap.values())
        out.print(f"{run.playbook.name}: {len(run.recap)} hosts, {changed} changes in {run.seconds}s")

    @main.command(epilog="Example: lxdkvm inventory default --format ini > hosts.ini")
    @click.argument("lab", required=False)
    @click.option("--format", "fmt", type=click.Choice(["yaml", "ini", "json"]), default="yaml",
                  show_default=True, help="Ansible's YAML or INI inventory, or an inventory script's JSON.")
    def inventory(lab, fmt) -> None:
        """Print an Ansible inventory of a lab that is up (docs/ansible.md)."""
        from ..outputs import inventory as inventory_mod

        with errors():
            click.echo(inventory_mod.render(inventory_mod.live(lab), fmt), nl=False)

    @main.command(epilog="Example: lxdkvm provision default --playbook verify.yml")
    @click.argument("lab", required=False)
    @click.option("--playbook", default="site.yml", show_default=True,
                  help="One of playbooks/ (site, kvm-host, guests, verify .yml) or a playbook file.")
    def provision(lab, playbook) -> None:
        """Run a playbook against a lab that is up, with Ansible (docs/ansible.md)."""
        run_playbook(lab, playbook)
