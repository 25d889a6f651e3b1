"""`lxdkvm verify|console|guest-exec|migrate`: a lab's guests, and proof of the whole lab. Parse, call
`lab`, print."""

from __future__ import annotations

import sys

import click

from .common import (EXIT_FAILED, EXIT_OK, STATUS_STYLE, err, errors, out, print_json, progress, safe, session,
                     warn)

LAB_ARG_HELP = "A lab file, or the name of a lab that is up."


@click.command(epilog="Example: lxdkvm verify labs/default.yaml --json")
@click.argument("lab", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print the checks as JSON (schemas/verify.schema.json).")
def verify(lab, as_json) -> None:
    """Prove the running lab: one row per check (PASS/WARN/FAIL) with its evidence; exit 1 on any FAIL.
    Hosts (unprivileged, /dev/kvm, KVM probe allowed and refused, libvirtd, virt-host-validate),
    networks (reachability matrix, isolation) and guests (booted, addresses, reachable, guest to guest
    across hosts)."""
    from rich.table import Table

    from ..lab import pipeline
    from ..lab.verify import summary
    from ..outputs import documents

    with errors(as_json):
        the_lab, checks = pipeline.verify(session(), lab, progress)
    counts = summary(checks)
    if as_json:
        print_json(documents.verify(the_lab.name, checks))
    else:
        table = Table(header_style="bold", title=f"verify lab {safe(the_lab.name)}")
        for column in ("scope", "check", "result", "evidence"):
            table.add_column(column, overflow="fold")
        for check in checks:  # evidence is what hosts and guests printed
            style = STATUS_STYLE.get(check.result, "bold red")
            table.add_row(safe(check.scope), safe(check.name), f"[{style}]{safe(check.result)}[/]",
                          safe(check.evidence, 2000, 20))
        out.print(table)
        out.print(f"verify lab {safe(the_lab.name)}: {counts['PASS']} PASS, {counts['WARN']} WARN, "
                  f"{counts['FAIL']} FAIL")
    sys.exit(EXIT_FAILED if counts["FAIL"] else EXIT_OK)

@click.command(epilog="Example: lxdkvm console default vm-1   (leave with Ctrl-])")
@click.argument("lab")
@click.argument("guest")
def console(lab, guest) -> None:
    """Attach to a guest's serial console (virsh console in its host; Ctrl-] leaves). Everything the
    console shows is also kept in the host's /var/log/libvirt/qemu/GUEST-serial.log."""
    from ..lab import guests as lab_guests
    from ..lxd.interactive import exec_interactive

    with errors():
        project, host = lab_guests.console_host(session(), lab, guest, warn)
        exec_interactive(session(), project, host, ["virsh", "console", "--force", guest])

@click.command(name="guest-exec", context_settings={"ignore_unknown_options": True},
              epilog="Example: lxdkvm guest-exec default vm-1 -- ip -4 addr")
@click.argument("lab")
@click.argument("guest")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds the command may take.")
def guest_exec(lab, guest, command, timeout) -> None:
    """Run COMMAND in a guest (through the tiny guest's agent on its second serial port) and print its
    output; the exit status is the command's. On a terminal, control characters in the output (escape
    sequences, carriage returns) are shown as escapes, not acted on; a pipe gets the bytes as they are."""
    from ..lab import guests as lab_guests

    command = list(command[1:] if command[:1] == ("--",) else command)
    with errors():
        stdout, stderr, code = lab_guests.guest_exec(session(), lab, guest, command, timeout, warn)
    for stream, text in ((sys.stdout, stdout), (sys.stderr, stderr)):
        stream.write(terminal_text(text) if stream.isatty() else text)
    sys.exit(code)


def terminal_text(text: str) -> str:
    """TEXT a guest printed, for a terminal: every line and tab kept, other control characters visible."""
    from ..labfile.topology import printable

    return "\n".join("\t".join(printable(part, len(part)) for part in line.split("\t"))
                     for line in text.split("\n"))

@click.command(epilog="Example: lxdkvm migrate default vm-1 --to kvm-2")
@click.argument("lab")
@click.argument("guest")
@click.option("--to", "to", required=True, help="The lab host to move the guest to.")
@click.option("--live/--offline", default=True, show_default=True,
              help="Keep the guest running while it moves (pre-copy), or pause it for the move.")
@click.option("--max-downtime", "max_downtime", type=click.IntRange(1, 60000), default=None, metavar="MS",
              help="The downtime budget of a live move in ms (default 50): QEMU switches over when what is left "
                   "fits in it.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the measurements as JSON (schemas/migrate.schema.json).")
def migrate(lab, guest, to, live, max_downtime, as_json) -> None:
    """Move a running guest to another host of the lab with libvirt over an isolated lab network (its
    disk copied when it has one), then check it kept running: same boot id, same address answering.
    Reports the migration time, the downtime QEMU measured against its budget, how hard auto-converge
    throttled the guest (libvirt's job statistics) and the pings lost at 5/s."""
    from ..lab import guests as lab_guests
    from ..outputs import documents

    with errors(as_json):
        result = lab_guests.migrate(session(), lab, guest, to, live, progress, warn, max_downtime)
    document = documents.migrate(result)
    if as_json:
        print_json(document)
    else:
        if result["same_boot"] is None:  # an imported image without lxdkvm's agent
            kept = "kept running (no agent: boot id not compared)" if result["running"] else \
                "[bold red]is not running[/]"
        else:
            kept = "kept its boot id" if result["same_boot"] else "[bold red]did NOT keep its boot id[/]"
        answers = "answers" if result["address_answers"] else "[bold red]does not answer[/]"
        out.print(f"{safe(guest)} moved {safe(result['from'])} → {safe(result['to'])} "
                  f"over {safe(result['over'])} in "
                  f"{result['seconds']}s (libvirt {result['libvirt_ms']} ms, downtime {result['downtime_ms']} ms"
                  f"{_budget(result)},"
                  f" {result['memory_mib'] or 0:.0f} MiB memory"
                  + (f", {result['disk_mib'] or 0:.0f} MiB disk" if result["disk_copied"] else "") + "); "
                  f"{kept}; {safe(result['address'])} {answers}; "
                  f"{result['pings_lost']} of {result['pings_sent']} "
                  "pings lost", highlight=False)
    sys.exit(EXIT_OK if document["ok"] else EXIT_FAILED)

def _budget(result: dict) -> str:
    """How the downtime compares with its budget, and what auto-converge did to get there."""
    if result.get("downtime_budget_ms") is None:
        return ""
    held = "within" if result["within_budget"] else "[bold yellow]over[/]"
    throttled = f", guest throttled to {100 - result['throttle_percent']:.0f}% by auto-converge" \
        if result.get("throttle_percent") else ""
    return f" {held} its {result['downtime_budget_ms']} ms budget{throttled}"


@click.group(name="guest-image", epilog="Example: lxdkvm guest-image import ./router.qcow2 --name router")
def guest_image() -> None:
    """Disk images guests may boot (`disk: {file: NAME}` in a lab file). A lab file names an image, never
    a path: only what root imported here can reach a lab host."""

@guest_image.command(name="import", epilog="Example: lxdkvm guest-image import ./router.qcow2 --name router")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The name lab files use (lowercase letters, digits, . _ -).")
@click.option("--format", "fmt", type=click.Choice(["raw", "qcow2"]), default=None,
              help="The file's format (default: what qemu-img detects).")
@click.option("--force", is_flag=True, help="Replace an image of that name.")
def guest_image_import(file, name, fmt, force) -> None:
    """Check FILE (raw or qcow2; no backing or external data file, not encrypted) and keep a standalone
    qcow2 copy of it as NAME."""
    from ..guests import store

    with errors():
        stored = store.import_file(file, name, fmt, force)
    out.print(f"guest image {stored.name}: {stored.virtual_mib} MiB disk, {stored.stored_bytes / 2**20:.1f} MiB "
              f"stored, sha256 {stored.sha256[:16]} (from {stored.source_format} {stored.source})", highlight=False)

@guest_image.command(name="list", epilog="Example: lxdkvm guest-image list")
def guest_image_list() -> None:
    """The imported guest images."""
    from ..guests import store

    images = store.listing()
    for image in images:
        out.print(f"{image.name}\t{image.virtual_mib} MiB\tsha256 {image.sha256[:16]}\t{image.imported}\t"
                  f"{image.source}", highlight=False)
    if not images:
        err.print("no guest images (`lxdkvm guest-image import FILE --name NAME`)")

@guest_image.command(name="remove", epilog="Example: lxdkvm guest-image remove router")
@click.argument("name")
def guest_image_remove(name) -> None:
    """Forget an imported image (hosts keep their copy until their lab goes)."""
    from ..guests import store

    with errors():
        if not store.remove(store.check_name(name)):
            raise click.ClickException(f"no guest image {name}")
    out.print(f"guest image {name} removed")


COMMANDS = [verify, console, guest_exec, migrate, guest_image]
