"""`lxdkvm ssh-config` and `lxdkvm uri`: what other programs (ssh, virsh, virt-manager, virt-install) need
to reach a lab's hosts with its key and its pinned host keys (docs/tools.md). Parse, call the library,
print; the library (`lab.sshconfig`, `lab.sshfiles`) is imported when a command runs."""

from __future__ import annotations

import click

from .common import errors, example, session, warn


@click.command("ssh-config", epilog=example(
    "lxdkvm ssh-config my-lab > my-lab.ssh_config && ssh -F my-lab.ssh_config kvm-1.my-lab",
    "Include /var/lib/lxdkvm/labs/*/ssh_config   # first line of ~/.ssh/config (docs/tools.md)"))
@click.argument("lab", required=False)
def ssh_config(lab) -> None:
    """Print an OpenSSH config for a lab that is up: `Host HOST.LAB` (and the bare HOST when no other lab
    has a host of that name) with its address, the lab's user and key, and host keys checked against the
    lab's known_hosts. `up` writes the same to the lab's state directory, for `Include`."""
    from ..lab import sshfiles
    from ..lab.load import lab_name

    with errors():
        text, warnings = sshfiles.live(session(), lab_name(lab))
    for warning in warnings:
        warn(warning)
    click.echo(text, nl=False)


@click.command(epilog=example("virsh -c \"$(lxdkvm uri my-lab kvm-1)\" list --all",
                             "virt-manager -c \"$(lxdkvm uri my-lab kvm-1)\""))
@click.argument("lab")
@click.argument("host")
@click.option("--standalone", is_flag=True,
              help="A URI that needs no ssh config: libvirt's own ssh client (libssh) with the lab's key and "
                   "known_hosts as URI parameters.")
def uri(lab, host, standalone) -> None:
    """Print the libvirt URI of HOST in LAB (a lab that is up). The default, qemu+ssh://lab@HOST.LAB/system,
    goes through the lab's ssh config: Include it from ~/.ssh/config (docs/tools.md)."""
    from ..lab import sshconfig, sshfiles
    from ..lab.load import lab_name

    with errors():
        name = lab_name(lab)
        recorded = sshfiles.records().get(name)
        if recorded is None:
            raise sshconfig.LxdkvmError(f"lab {name} has no ssh config: `lxdkvm up` it (again) first")
        if host not in recorded:
            known = ", ".join(sorted(recorded)) or "none"
            raise sshconfig.LxdkvmError(f"lab {name} has no host {host!r} reachable over ssh "
                                        f"(hosts: {known})")
        access = sshfiles.access(name)
        text = (sshconfig.standalone_uri(recorded[host], access) if standalone
                else sshconfig.uri(name, host, access.user))
    click.echo(text)


COMMANDS = [ssh_config, uri]
