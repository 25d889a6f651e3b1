"""`lxdkvm doctor|probe-kvm|setup|launch|delete`: this machine and its daemon."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from .. import kvmprobe
from .common import (EXIT_FAILED, EXIT_OK, STATUS_STYLE, daemon_option, errors, out, print_json, progress,
                     session)

DEFAULT_PROFILE = "kvm-host"


@click.command(epilog="Example: lxdkvm doctor --lab labs/default.yaml --json")
@click.option("--lab", "lab_file", type=click.Path(dir_okay=False), default=None,
              help="A lab file: check the machine's limits against its number of hosts (default: as many "
                   "hosts as this machine's memory holds).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the checks as JSON (schemas/doctor.schema.json).")
@daemon_option
def doctor(lab_file: str | None, as_json: bool) -> None:
    """Check that this host can run a KVM lab, with evidence and fixes. Exit 1 if it cannot."""
    from rich.table import Table

    from .. import doctor as doctor_mod
    from ..machine import hostcaps, impair, limits
    from ..machine.storage import btrfs_support
    from ..outputs import documents

    lab_name, hosts = None, limits.capacity_by_memory(hostcaps.mem_total() or 0)
    if lab_file:
        from ..lab.load import load

        # a lab file that does not pass is said as `plan` says it, and nothing is checked
        with errors(as_json):
            lab = load(lab_file, machine=False)
        lab_name, hosts = lab.name, len(lab.hosts)
    with errors(as_json):
        checks = doctor_mod.diagnose(hostcaps.read_host(), kvmprobe.probe(), _server_facts(), btrfs_support())
        checks += doctor_mod.limit_checks(limits.read(), hosts, lab_name)
        checks += doctor_mod.impair_checks(impair.probe())
    ok = doctor_mod.verdict(checks)
    if as_json:
        print_json(documents.doctor(checks))
    else:
        table = Table(show_lines=False, header_style="bold")
        for column in ("check", "status", "evidence", "fix"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(escape(c.name), f"[{STATUS_STYLE[c.status]}]{c.status}[/]", escape(c.evidence), escape(c.fix))
        out.print(table)
        out.print("[green]This host can run a KVM lab.[/]" if ok else "[bold red]This host cannot run a KVM lab yet.[/]")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _server_facts():
    """The daemon's facts for `doctor`; a daemon setting lxdkvm does not know is a fact too."""
    from ..errors import LxdkvmError
    from ..lxd.server import ServerFacts

    try:
        return session().server.probe()
    except LxdkvmError as exc:
        return ServerFacts(socket="", reachable=False, error=str(exc))


@click.command("probe-kvm", epilog="Example: lxdkvm probe-kvm --json")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (schemas/probe-kvm.schema.json).")
@click.option("--device", default=kvmprobe.DEVICE, show_default=True)
def probe_kvm(as_json: bool, device: str) -> None:
    """Run a tiny guest through /dev/kvm (KVM_CREATE_VM … KVM_RUN) and check its exits. Exit 1 when KVM
    is not usable."""
    from ..outputs import documents

    result = kvmprobe.probe(device)  # never raises: a failure is its result
    if as_json:
        print_json(documents.probe_kvm(result))
    else:
        click.echo(result.line())
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


@click.command(epilog="Example: lxdkvm setup --daemon incus")
@daemon_option
def setup() -> None:
    """Install, start and initialise LXD or Incus (storage pool, NAT bridge) as needed."""
    from ..lxd import setup as lxdsetup

    with errors():
        lxdsetup.ensure_lxd(session(), progress)
        facts = session().server.facts()
    out.print(f"{facts.daemon} {facts.version} ready: pools {', '.join(p['name'] for p in facts.pools)}; "
              f"networks {', '.join(n['name'] for n in facts.networks if n['managed'])}", highlight=False)


@click.command(epilog="Example: lxdkvm launch kvm-a kvm-b --image lxdkvm/kvm-host")
@click.argument("names", nargs=-1, required=True)
@click.option("--image", "image_alias", default="lxdkvm/base", show_default=True)
@click.option("--profile", "profiles", multiple=True, default=["default", DEFAULT_PROFILE], show_default=True)
@click.option("--pool", help="Storage pool for the hosts [default: the copy-on-write pool lxdkvm chooses].")
def launch(names, image_alias, profiles, pool) -> None:
    """Launch KVM host containers in parallel and wait until each is ready."""
    from ..hosts import readiness
    from ..lxd import setup as lxdsetup

    with errors():
        pool = pool or lxdsetup.ensure_hosts_pool(session(), progress).name
        results = readiness.launch_many(session().instances, list(names), image_alias, list(profiles), pool=pool,
                                        report=lambda host, msg: progress(f"{host}: {msg}"))
    for name, took in results.items():
        out.print(f"{escape(name)} ready: " + ", ".join(f"{stage} {secs}s" for stage, secs in took.items()))


@click.command(epilog="Example: lxdkvm delete kvm-a kvm-b")
@click.argument("names", nargs=-1, required=True)
def delete(names) -> None:
    """Delete containers (stopping them first)."""
    with errors():
        instances = session().instances
        for name in names:
            out.print(f"{escape(name)} {'deleted' if instances.delete(name) else 'does not exist'}")


COMMANDS = [doctor, probe_kvm, setup, launch, delete]
