"""The `lxdkvm` command: parse arguments, call one library function, print the result.

Each command imports the library it calls when it runs, so `lxdkvm --help` and the quick commands do not
pay for pylxd, pydantic or Jinja (tests/unit/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from .. import kvmprobe
from ..errors import LxdkvmError
from ..hosts import profile as profile_mod
from ..images import base as image_mod
from ..labfile.topology import LabInvalid
from .cluster import register as register_cluster_commands
from .guests import register as register_guest_commands
from .lab import register as register_lab_commands
from .outputs import register as register_output_commands

# Wide enough for the doctor's evidence when the output is a file or a CI log.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
DEFAULT_PROFILE = "kvm-host"


@contextmanager
def _errors():
    """Library errors become one red line on stderr and exit status 1."""
    try:
        yield
    except LabInvalid as exc:  # every problem, with file:line and key; exit 2 like a usage error
        err.print(f"[bold red]error:[/] {escape(exc.source)}: {len(exc.problems)} problem(s), "
                  "nothing was changed", highlight=False)
        err.print(exc.report(), highlight=False, markup=False)
        sys.exit(2)
    except LxdkvmError as exc:
        # soft_wrap: LXD's messages stay whole lines in logs, whatever the terminal's width
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[bold red]interrupted:[/] run the same command again to finish, or `lxdkvm down` to "
                  "remove what was made", highlight=False)
        sys.exit(130)


def _progress(message: str) -> None:
    err.print(f"[dim]·[/] {message}", highlight=False)


def _choose_daemon(_ctx, _param, value: str | None) -> str | None:
    """--daemon sets LXDKVM_DAEMON, which lxdkvm.lxd reads (and the subprocesses lxdkvm starts inherit)."""
    if value:
        import os

        os.environ["LXDKVM_DAEMON"] = value
    return value


def _daemon_option(func):
    return click.option("--daemon", type=click.Choice(["lxd", "incus"]), expose_value=False,
                        callback=_choose_daemon, is_eager=True,
                        help="Talk to LXD or Incus [default: $LXDKVM_DAEMON, else LXD where it is "
                             "installed, else Incus where only it is].")(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Example: lxdkvm doctor && lxdkvm up && lxdkvm status --watch")
@_daemon_option
@click.option("--lxd-dir", metavar="DIR", envvar="LXD_DIR",
              help="The LXD to use: its directory (its unix.socket), e.g. a member of the sandbox cluster. "
                   "Default: $LXD_DIR, else the machine's LXD.")
def main(lxd_dir: str | None) -> None:
    """Multi-host QEMU/KVM labs in unprivileged LXD (or Incus) containers."""
    if lxd_dir:  # pylxd, `lxc` and lxdkvm's own code all read LXD_DIR
        import os

        os.environ["LXD_DIR"] = lxd_dir


@main.command(epilog="Example: lxdkvm doctor --json")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@_daemon_option
def doctor(as_json: bool) -> None:
    """Check that this host can run a KVM lab, with evidence and fixes. Exit 1 if it cannot."""
    from rich.table import Table

    from ..lxd import probe_server
    from ..machine import doctor as doctor_mod
    from ..machine import hostcaps
    from ..machine.storage import btrfs_support

    checks = doctor_mod.diagnose(hostcaps.read_host(), kvmprobe.probe(), probe_server(), btrfs_support())
    ok = doctor_mod.verdict(checks)
    if as_json:
        click.echo(json.dumps(doctor_mod.as_json(checks), indent=2))
    else:
        table = Table(show_lines=False, header_style="bold")
        for column in ("check", "status", "evidence", "fix"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{STATUS_STYLE[c.status]}]{c.status}[/]", c.evidence, c.fix)
        out.print(table)
        out.print("[green]This host can run a KVM lab.[/]" if ok else "[bold red]This host cannot run a KVM lab yet.[/]")
    sys.exit(0 if ok else 1)


@main.command("probe-kvm", epilog="Example: lxdkvm probe-kvm --json")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--device", default=kvmprobe.DEVICE, show_default=True)
def probe_kvm(as_json: bool, device: str) -> None:
    """Run a tiny guest through /dev/kvm (KVM_CREATE_VM … KVM_RUN) and check its exits."""
    sys.exit(kvmprobe.main([f"--device={device}", *(["--json"] if as_json else [])]))


@main.group(epilog="Example: lxdkvm profile render --portable --cpu amd")
def profile() -> None:
    """Render or apply the LXD profile of a KVM host container."""


def _profile_options(func):
    options = [
        click.option("--for-host/--portable", "for_host", default=True,
                     help="Only what this host provides (default), or the profile for a typical host."),
        click.option("--cpu", type=click.Choice(["intel", "amd"]), default="intel", show_default=True,
                     help="CPU vendor of the portable profile."),
        click.option("--idmap", type=click.Choice(profile_mod.IDMAPS), default="isolated", show_default=True,
                     help="A private uid/gid range per container, or the range shared by all."),
        click.option("--cloud-init-keys", type=click.Choice(list(profile_mod.CLOUD_INIT_KEYS)),
                     default="modern", show_default=True, help="cloud-init.* keys (LXD ≥ 4.x) or user.*"),
        click.option("--kvm-gid", type=int, default=0, show_default=True,
                     help="GID of the kvm group inside the image (0: root's group until cloud-init "
                          "re-groups the devices at boot)."),
        click.option("--kvm-gid-from", "kvm_gid_from", metavar="IMAGE",
                     help="Take --kvm-gid from an lxdkvm image's lxdkvm.kvm_gid property."),
        click.option("--packages/--baked", "install_packages", default=True,
                     help="cloud-init installs libvirt/QEMU (plain image, default), or the image is baked."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _spec(for_host: bool, cpu: str, idmap: str, cloud_init_keys: str, kvm_gid: int,
          kvm_gid_from: str | None, install_packages: bool) -> profile_mod.ProfileSpec:
    from ..machine import hostcaps

    if kvm_gid_from:
        kvm_gid = image_mod.kvm_gid(kvm_gid_from)
    options = dict(kvm_gid=kvm_gid, idmap=idmap, cloud_init_keys=cloud_init_keys,
                   install_packages=install_packages)
    if for_host:
        return profile_mod.for_host(hostcaps.read_host(), **options)
    return profile_mod.portable(cpu, **options)


@profile.command("render", epilog="Example: lxdkvm profile render --portable --cpu intel -o kvm-host.yaml")
@_profile_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def profile_render(output, **options) -> None:
    """Print the profile as YAML for `lxc profile edit`."""
    with _errors():
        text = profile_mod.render(_spec(**options))
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@profile.command("apply", epilog="Example: lxdkvm profile apply kvm-host --idmap shared")
@click.argument("name", default=DEFAULT_PROFILE)
@_profile_options
def profile_apply(name, **options) -> None:
    """Create or update profile NAME in LXD."""
    from ..lxd import Lxd

    with _errors():
        text = profile_mod.render(_spec(**options))
        action = Lxd().apply_profile(name, profile_mod.parse(text))
    out.print(f"profile {name} {action}")


@profile.command("delete", epilog="Example: lxdkvm profile delete kvm-host")
@click.argument("name", default=DEFAULT_PROFILE)
def profile_delete(name) -> None:
    """Delete profile NAME (LXD refuses while containers use it)."""
    from ..lxd import Lxd

    with _errors():
        deleted = Lxd().delete_profile(name)
    out.print(f"profile {name} {'deleted' if deleted else 'does not exist'}")


@main.group(epilog="Example: lxdkvm image build && lxdkvm image bake")
def image() -> None:
    """Build container images offline."""


@image.command("build", epilog="Example: lxdkvm image build --release bookworm --force")
@click.option("--release", default=image_mod.DEFAULT_RELEASE, show_default=True)
@click.option("--alias", default=image_mod.DEFAULT_ALIAS, show_default=True)
@click.option("--mirror", default=image_mod.DEFAULT_MIRROR, show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even if a cached image matches.")
def image_build(release, alias, mirror, force) -> None:
    """Debootstrap a Debian image with cloud-init and import it into LXD (cached)."""
    with _errors():
        result = image_mod.build(image_mod.Recipe(release=release, mirror=mirror), alias, force, _progress)
    out.print(f"image {result.alias}: {result.action} (fingerprint {result.fingerprint[:12]}, "
              f"key {result.key}, kvm gid {result.properties.get('lxdkvm.kvm_gid', '?')})")


@image.command("bake", epilog="Example: lxdkvm image bake --from lxdkvm/base --alias lxdkvm/kvm-host")
@click.option("--from", "from_alias", default=image_mod.DEFAULT_ALIAS, show_default=True,
              help="The base image (built by `lxdkvm image build`).")
@click.option("--alias", default="lxdkvm/kvm-host", show_default=True)
@click.option("--force", is_flag=True, help="Bake again even if a matching image exists.")
def image_bake(from_alias, alias, force) -> None:
    """Bake a KVM-host image: libvirt and QEMU installed, configured, verified, cleaned for reuse."""
    from ..images import bake

    with _errors():
        result = bake.bake(from_alias, alias, force, _progress)
    out.print(f"image {result.alias}: {result.action} (fingerprint {result.fingerprint[:12]}, key {result.key}; "
              f"{result.properties.get('lxdkvm.contains', '')})")


@main.command(epilog="Example: lxdkvm setup --daemon incus")
@_daemon_option
def setup() -> None:
    """Install, start and initialise LXD or Incus (storage pool, NAT bridge) as needed."""
    from ..lxd import setup as lxdsetup

    with _errors():
        client = lxdsetup.ensure_lxd(_progress)
        facts = client.server_facts()
    out.print(f"{facts.daemon} {facts.version} ready: pools {', '.join(p['name'] for p in facts.pools)}; "
              f"networks {', '.join(n['name'] for n in facts.networks if n['managed'])}")


@main.command(epilog="Example: lxdkvm launch kvm-a kvm-b --image lxdkvm/kvm-host")
@click.argument("names", nargs=-1, required=True)
@click.option("--image", "image_alias", default=image_mod.DEFAULT_ALIAS, show_default=True)
@click.option("--profile", "profiles", multiple=True, default=["default", DEFAULT_PROFILE], show_default=True)
@click.option("--pool", help="Storage pool for the hosts [default: the copy-on-write pool lxdkvm chooses].")
def launch(names, image_alias, profiles, pool) -> None:
    """Launch KVM host containers in parallel and wait until each is ready."""
    from ..hosts import readiness
    from ..lxd import Lxd
    from ..lxd import setup as lxdsetup

    with _errors():
        pool = pool or lxdsetup.ensure_hosts_pool(Lxd(), _progress).name
        results = readiness.launch_many(list(names), image_alias, list(profiles), pool=pool,
                                      report=lambda host, msg: _progress(f"{host}: {msg}"))
    for name, took in results.items():
        out.print(f"{name} ready: " + ", ".join(f"{stage} {secs}s" for stage, secs in took.items()))


@main.command(epilog="Example: lxdkvm delete kvm-a kvm-b")
@click.argument("names", nargs=-1, required=True)
def delete(names) -> None:
    """Delete containers (stopping them first)."""
    from ..lxd import Lxd

    with _errors():
        client = Lxd()
        for name in names:
            out.print(f"{name} {'deleted' if client.delete_instance(name) else 'does not exist'}")


register_lab_commands(main, out, err, _errors)
register_guest_commands(main, out, err, _errors)
register_output_commands(main, out, err, _errors)
register_cluster_commands(main, out, err, _errors)


if __name__ == "__main__":
    main()
