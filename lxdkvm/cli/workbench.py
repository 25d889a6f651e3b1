"""`lxdkvm impair|capture`: the lab as a workbench — impaired links and packet capture on a lab network.
Parse, call `lab.links` / `lab.capture`, print (docs/workbench.md)."""

from __future__ import annotations

import json

import click

from .common import errors, example, out, progress, safe, session


@click.command(epilog=example("lxdkvm impair demo lan --host kvm-2 --loss 30%",
                              "lxdkvm impair demo lan --rate 2Mbit", "lxdkvm impair demo lan --json",
                              "lxdkvm impair demo lan --clear"))
@click.argument("lab")
@click.argument("network")
@click.option("--host", metavar="HOST", help="Only this host's link (default: every host on NETWORK).")
@click.option("--loss", metavar="P%", help="Drop this share of what the link carries to its host, e.g. 30%.")
@click.option("--rate", metavar="R", help="Limit it to this rate, e.g. 2Mbit (bit, kbit, Mbit, Gbit).")
@click.option("--delay", metavar="D", help="Delay it, e.g. 20ms (only where the kernel has netem: "
                                             "`lxdkvm doctor`).")
@click.option("--jitter", metavar="J", help="With --delay: vary the delay by up to this, e.g. 5ms.")
@click.option("--clear", is_flag=True, help="Remove the impairment of these links.")
@click.option("--json", "as_json", is_flag=True, help="Print what is in force as JSON "
                                                       "(schemas/impair.schema.json).")
def impair(lab, network, host, loss, rate, delay, jitter, clear, as_json) -> None:
    """Impair the links of LAB's hosts on NETWORK (what each carries towards its host); with no change
    asked, show the impairments in force. A new impairment replaces a link's old one."""
    from ..lab import links
    from ..lab.load import lab_name
    from ..labfile import impairment as values

    asked = [v for v in (loss, rate, delay, jitter) if v is not None]
    if clear and asked:
        raise click.UsageError("--clear takes no --loss, --rate, --delay or --jitter")
    with errors():
        try:
            wanted = values.parse(loss, rate, delay, jitter) if asked else None
        except values.ImpairmentError as exc:
            raise click.BadParameter(f"{exc} ({exc.hint})", param_hint=f"--{exc.key or 'loss'}") from None
        done = links.impair(session(), lab_name(lab), network, host, wanted, clear, progress)
    if as_json:
        click.echo(json.dumps(done.as_json(), indent=2))
        return
    if not done.entries:
        out.print(f"network {safe(network)} of lab {safe(done.lab)}: no impaired link", highlight=False)
    for entry in done.entries:
        out.print(f"network {safe(entry.network)} → {safe(entry.host)} ({safe(entry.device)}): "
                  f"{safe(entry.impairment.text())}", highlight=False)


COMMANDS = [impair]
