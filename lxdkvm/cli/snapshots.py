"""`lxdkvm snapshot [create|list|delete]` and `lxdkvm restore`: a whole lab at one moment, running guests'
memory included. Parse, call `snapshots.lab`, print."""

from __future__ import annotations

import sys

import click

from .common import errors, out, print_json, progress, safe, session

LAB_HELP = "The name of a lab that is up (or its lab file)."


class _DefaultCreate(click.Group):
    """`lxdkvm snapshot LAB [NAME]` is `lxdkvm snapshot create LAB [NAME]`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


def _report(host: str, message: str) -> None:
    progress(message if host == "lab" else f"{host}: {message}")


@click.group(cls=_DefaultCreate, epilog="Example: lxdkvm snapshot my-lab before-upgrade && "
                                         "lxdkvm restore my-lab before-upgrade")
def snapshot() -> None:
    """Snapshots of a whole lab: every host (copy-on-write) and every running guest's memory."""


@snapshot.command(epilog="Example: lxdkvm snapshot create my-lab before-upgrade")
@click.argument("lab")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def create(lab, name, as_json) -> None:
    """Snapshot LAB as NAME [default: s-DATE-TIME]: its running guests are saved (memory and devices), every
    host is snapshotted, then the guests resume where they were."""
    from ..snapshots import lab as snapshots

    from ..outputs import documents

    with errors(as_json):
        taken = snapshots.take(session(), lab, name, _report)
    if as_json:
        print_json(documents.snapshot(taken.summary()))
        return
    summary = taken.summary()
    out.print(f"snapshot {safe(taken.name)} of lab {safe(taken.lab)}: {summary['hosts']} hosts, "
              f"{summary['guests_saved']} running guests saved, in {taken.seconds:.1f} s")


@snapshot.command(name="list", epilog="Example: lxdkvm snapshot list my-lab --json")
@click.argument("lab")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
def list_(lab, as_json) -> None:
    """The lab's snapshots, oldest first."""
    from rich.table import Table

    from ..outputs import documents
    from ..snapshots import lab as snapshots

    with errors(as_json):
        found = [s.summary() for s in snapshots.listing(lab)]
    if as_json:
        print_json(documents.snapshots(found))
        return
    table = Table(header_style="bold")
    for column in ("name", "created", "hosts", "guests saved", "guests off", "took"):
        table.add_column(column)
    for s in found:
        table.add_row(safe(s["name"]), s["created"], str(s["hosts"]), str(s["guests_saved"]),
                      str(s["guests_off"]), f"{s['seconds']:.1f} s")
    out.print(table)


@snapshot.command(epilog="Example: lxdkvm snapshot delete my-lab before-upgrade")
@click.argument("lab")
@click.argument("name")
def delete(lab, name) -> None:
    """Delete snapshot NAME of LAB from every host."""
    from ..snapshots import lab as snapshots

    with errors():
        hosts = snapshots.delete(session(), lab, name)
    out.print(f"deleted snapshot {safe(name)} ({len(hosts)} hosts)")


@click.command(epilog="Example: lxdkvm restore my-lab before-upgrade")
@click.argument("lab")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print what was restored as JSON.")
def restore(lab, name, as_json) -> None:
    """Bring LAB back to snapshot NAME: every host as it was (hosts made since are deleted), every guest
    that was running resumed from its saved memory on the host it was on. Says first what differs from the
    lab file in force now."""
    from ..snapshots import lab as snapshots

    from ..outputs import documents

    with errors(as_json):
        done = snapshots.restore(session(), lab, name, _report)
    if as_json:
        print_json(documents.restored(done.snapshot.lab, done.snapshot.summary(), done.seconds,
                                      done.differences, done.deleted))
        return
    out.print(f"restored lab {safe(done.snapshot.lab)} to snapshot {safe(done.snapshot.name)} in "
              f"{done.seconds:.1f} s: {len(done.snapshot.hosts)} hosts, "
              f"{sum(len(h.saved) for h in done.snapshot.hosts.values())} guests resumed")
    sys.stdout.flush()


COMMANDS = [snapshot, restore]
