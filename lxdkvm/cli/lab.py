"""`lxdkvm up|plan|down|status|exec|shell|inventory|provision`: the lab commands. Parse, call `lab`, print.

Each command imports `lab` (pylxd, pydantic, Jinja behind it) when it runs, not when `lxdkvm` starts.
"""

from __future__ import annotations

import sys

import click

from ..labfile import topology as t
from .common import EXIT_FAILED, EXIT_OK, err, errors, out, plain, print_json, safe, session, warn
from .views import Progress, print_plan, print_status, watch_status

LAB_HELP = "A lab file, or the name of a lab that is up [default: the embedded default lab]."
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


def allowances(flags: dict[str, bool]):
    from ..labfile.confine import Allowances

    return Allowances(**{name.removeprefix("allow_"): on for name, on in flags.items()})


@click.command(epilog="Example: lxdkvm plan labs/default.yaml")
@click.argument("lab", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (schemas/plan.schema.json).")
@allow_options
def plan(lab, as_json, **allow) -> None:
    """Show what `up` would create, change or delete, and why. Changes nothing. Exit 1 when objects that
    are not the lab's are in the way."""
    from ..lab import pipeline
    from ..outputs import documents

    with errors(as_json):
        _, the_plan = pipeline.plan(session(), lab, allowances(allow))
    if as_json:
        for warning in the_plan.warnings:  # also in the JSON, as "warnings"
            warn(warning)
        print_json(documents.plan(the_plan))
    else:
        print_plan(out, the_plan)
    sys.exit(EXIT_FAILED if the_plan.conflicts else EXIT_OK)


@click.command(epilog="Example: lxdkvm up labs/default.yaml --workers 4")
@click.argument("lab", required=False)
@click.option("--workers", default=10, show_default=True, help="Hosts created and checked at once.")
@click.option("--provision", is_flag=True, help="Then run playbooks/site.yml against the lab with "
              "Ansible (docs/ansible.md).")
@allow_options
def up(lab, workers, provision, **allow) -> None:
    """Make the lab real: validate, plan, create in parallel, wait until every host is ready."""
    from ..lab import pipeline

    with errors(), Progress(err) as progress:
        result = pipeline.up(session(), lab, progress, workers, allowances(allow))
    name = safe(result.lab.name)
    guests = f" and {len(result.lab.guests)} guests" if result.lab.guests else ""
    if result.plan.empty:
        for warning in result.plan.warnings:
            warn(warning)
        out.print(f"lab {name}: nothing to do, {len(result.lab.hosts)} hosts{guests} are up and ready")
    else:
        print_plan(out, result.plan)
        seconds = result.applied.seconds + (result.guests.seconds if result.guests else 0)
        out.print(f"lab {name} is up: {len(result.lab.hosts)} hosts{guests} ready in {seconds:.1f}s")
    with errors():
        print_status(out, pipeline.status(session(), result.lab.name))
    if provision:
        _playbook(result.lab.name, "site.yml")


@click.command(epilog="Example: lxdkvm down default   (or: lxdkvm down labs/default.yaml)")
@click.argument("lab", required=False)
def down(lab) -> None:
    """Delete the lab: its hosts, profiles, networks and project, and nothing else."""
    from ..lab import pipeline

    with errors(), Progress(err) as progress:
        the_plan, seconds = pipeline.down(session(), lab, progress)
    name = safe(the_plan.lab)
    if not the_plan.actions:
        out.print(f"lab {name}: nothing to delete")
    else:
        out.print(f"lab {name} is down: deleted {len(the_plan.select('host'))} hosts, "
                  f"{len(the_plan.select('network'))} networks and project {safe(the_plan.project)} "
                  f"in {seconds}s")


@click.command(epilog="Example: lxdkvm status default --watch --interval 1")
@click.argument("lab", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print the status as JSON (schemas/status.schema.json).")
@click.option("--watch", is_flag=True, help="Keep showing the status, refreshed, until Ctrl-C (not a "
              "terminal: a new table only when something changed).")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="Seconds between refreshes with --watch.")
def status(lab, as_json, watch, interval) -> None:
    """Hosts of the lab, their state, addresses per network and readiness."""
    from ..lab import pipeline
    from ..outputs import documents

    if watch and as_json:
        raise click.UsageError("--watch shows a view that changes; --json prints one document: choose one")
    if watch:
        with errors():
            pipeline.lab_name(lab)  # a bad file or name is an error now, not a view that repeats it
        watch_status(out, lambda: pipeline.status(session(), lab), interval)
        return
    with errors(as_json):
        result = pipeline.status(session(), lab)
    if as_json:
        for warning in result.warnings:  # also in the JSON, as "warnings"
            warn(warning)
        print_json(documents.status(result))
    else:
        print_status(out, result)


@click.command(name="exec", context_settings={"ignore_unknown_options": True},
               epilog="Example: lxdkvm exec --lab default kvm-1 -- virsh list --all")
@click.option("--lab", "lab", help=LAB_HELP)
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(lab, host, command) -> None:
    """Run COMMAND on a lab host: lxdkvm exec [--lab LAB] HOST -- CMD..."""
    _interactive(lab, host, list(command))


@click.command(epilog="Example: lxdkvm shell --lab default kvm-2")
@click.option("--lab", "lab", help=LAB_HELP)
@click.argument("host")
def shell(lab, host) -> None:
    """Open a login shell on a lab host."""
    _interactive(lab, host, ["su", "-l"])


def _interactive(lab, host: str, command: list[str]) -> None:
    from ..lab.load import lab_name
    from ..lxd.interactive import exec_interactive

    with errors():
        exec_interactive(session(), t.project_name(lab_name(lab)), host, command)


@click.command(epilog="Example: lxdkvm inventory default --format ini > hosts.ini")
@click.argument("lab", required=False)
@click.option("--format", "fmt", type=click.Choice(["yaml", "ini", "json"]), default="yaml",
              show_default=True, help="Ansible's YAML or INI inventory, or an inventory script's JSON.")
def inventory(lab, fmt) -> None:
    """Print an Ansible inventory of a lab that is up (docs/ansible.md)."""
    from ..outputs import inventory as inventory_mod

    with errors(fmt == "json"):
        found = inventory_mod.live(session(), lab)
        text = inventory_mod.render(found, fmt)
    for warning in found.warnings:
        warn(warning)
    click.echo(text, nl=False)


@click.command(epilog="Example: lxdkvm provision default --playbook verify.yml")
@click.argument("lab", required=False)
@click.option("--playbook", default="site.yml", show_default=True,
              help="One of playbooks/ (site, kvm-host, guests, verify .yml) or a playbook file.")
def provision(lab, playbook) -> None:
    """Run a playbook against a lab that is up, with Ansible (docs/ansible.md)."""
    _playbook(lab, playbook)


def _playbook(lab, playbook: str) -> None:
    from ..clients import ansible

    with errors():
        # Ansible's output quotes what hosts returned: each line with its control characters shown
        run = ansible.run_playbook(session(), lab, playbook, on_warning=warn,
                                   on_line=lambda line: click.echo(plain(line, 8000, 50)))
    changed = sum(r["changed"] for r in run.recap.values())
    out.print(f"{safe(run.playbook.name)}: {len(run.recap)} hosts, {changed} changes in {run.seconds}s")


COMMANDS = [plan, up, down, status, exec_, shell, inventory, provision]
