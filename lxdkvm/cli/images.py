"""`lxdkvm profile render|apply|delete` and `lxdkvm image build|bake`: what a host is made of."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..hosts import profile as profile_mod
from ..images import base as image_mod
from .common import errors, out, progress, session

DEFAULT_PROFILE = "kvm-host"


@click.group(epilog="Example: lxdkvm profile render --portable --cpu amd")
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
        kvm_gid = image_mod.kvm_gid(session(), kvm_gid_from)
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
    with errors():
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
    with errors():
        text = profile_mod.render(_spec(**options))
        action = session().profiles.apply(name, profile_mod.parse(text))
    out.print(f"profile {escape(name)} {action}")


@profile.command("delete", epilog="Example: lxdkvm profile delete kvm-host")
@click.argument("name", default=DEFAULT_PROFILE)
def profile_delete(name) -> None:
    """Delete profile NAME (LXD refuses while containers use it)."""
    with errors():
        deleted = session().profiles.delete(name)
    out.print(f"profile {escape(name)} {'deleted' if deleted else 'does not exist'}")


@click.group(epilog="Example: lxdkvm image build && lxdkvm image bake")
def image() -> None:
    """Build container images offline."""


@image.command("build", epilog="Example: lxdkvm image build --release bookworm --force")
@click.option("--release", default=image_mod.DEFAULT_RELEASE, show_default=True)
@click.option("--alias", default=image_mod.DEFAULT_ALIAS, show_default=True)
@click.option("--mirror", default=image_mod.DEFAULT_MIRROR, show_default=True)
@click.option("--force", is_flag=True, help="Rebuild even if a cached image matches.")
def image_build(release, alias, mirror, force) -> None:
    """Debootstrap a Debian image with cloud-init and import it into LXD (cached)."""
    with errors():
        result = image_mod.build(session(), image_mod.Recipe(release=release, mirror=mirror), alias, force, progress)
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

    with errors():
        result = bake.bake(session(), from_alias, alias, force, progress)
    out.print(f"image {result.alias}: {result.action} (fingerprint {result.fingerprint[:12]}, key {result.key}; "
              f"{result.properties.get('lxdkvm.contains', '')})")


COMMANDS = [profile, image]
