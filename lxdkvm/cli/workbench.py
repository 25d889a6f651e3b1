"""`lxdkvm impair|capture`: the lab as a workbench — impaired links and packet capture on a lab network.
Parse, call `lab.links` / `lab.capture`, print (docs/workbench.md)."""

from __future__ import annotations

import sys

import click

from .common import errors, example, out, print_json, progress, safe, session


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
    from ..outputs import documents

    with errors(as_json):
        try:
            wanted = values.parse(loss, rate, delay, jitter) if asked else None
        except values.ImpairmentError as exc:
            raise click.BadParameter(f"{exc} ({exc.hint})", param_hint=f"--{exc.key or 'loss'}") from None
        done = links.impair(session(), lab_name(lab), network, host, wanted, clear, progress)
    if as_json:
        print_json(documents.impair(done.as_json()))
        return
    if not done.entries:
        out.print(f"network {safe(network)} of lab {safe(done.lab)}: no impaired link", highlight=False)
    for entry in done.entries:
        out.print(f"network {safe(entry.network)} → {safe(entry.host)} ({safe(entry.device)}): "
                  f"{safe(entry.impairment.text())}", highlight=False)


@click.command(epilog=example("lxdkvm capture demo lan -w lan.pcapng --count 100",
                              "lxdkvm capture demo lan --host kvm-1 --filter 'icmp' -w - | wireshark -k -i -"))
@click.argument("lab")
@click.argument("network")
@click.option("--host", metavar="HOST", help="Capture inside this host, on its bridge of NETWORK (traffic "
                                             "between its guests); default: on this machine's bridge.")
@click.option("--filter", "bpf", metavar="BPF", help="A capture filter, e.g. 'icmp and host 10.0.0.5'.")
@click.option("--count", type=int, metavar="N", help="Stop after N packets (default: at Ctrl-C or SIGTERM).")
@click.option("-w", "--write", "path", metavar="FILE", help="Write pcapng to FILE, or to standard output with "
                                                           "`-w -` [default: - when stdout is not a terminal].")
def capture(lab, network, host, bpf, count, path) -> None:
    """Capture packets on NETWORK of LAB as pcapng, until --count packets, Ctrl-C or SIGTERM."""
    from ..lab import capture as plan
    from ..lab.load import lab_name
    from ..labfile import topology as t
    from ..machine import capture as run
    from .views import stoppable

    if path is None and sys.stdout.isatty():
        raise click.UsageError("pcapng is binary: give -w FILE, or -w - to pipe it (e.g. into wireshark -k -i -)")
    with errors():
        name = lab_name(lab)
        bpf, count = plan.checked_filter(bpf), plan.checked_count(count)
        target = plan.target(session().lab(t.project_name(name)), name, network, host)
        if bpf:
            run.compiles(lambda empty: plan.compile_argv(bpf, empty), plan.EMPTY_ETHERNET_PCAP)
        sink = sys.stdout.buffer if path in (None, "-") else open(path, "wb")  # noqa: SIM115 - closed below
        write = (lambda data: (sink.write(data), sink.flush())) if sink is sys.stdout.buffer else sink.write
        where = f"host {target.host}'s bridge {target.interface}" if target.host else f"bridge {target.interface}"
        progress(f"capturing on {where} ({target.name}){' for ' + repr(bpf) if bpf else ''}; Ctrl-C ends it")
        try:
            running = run.start(plan.argv(target, bpf, count))
            with stoppable(running.stop):
                said = run.stream(running, write, target.name, f"lxdkvm capture {target.name}")
        finally:
            if sink is not sys.stdout.buffer:
                sink.close()
    progress(f"{running.packets} packets written to {'standard output' if path in (None, '-') else path}"
             + (f" (tcpdump: {said.splitlines()[-1]})" if said else ""))


COMMANDS = [impair, capture]
