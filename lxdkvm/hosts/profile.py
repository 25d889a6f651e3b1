"""The LXD profile that makes an unprivileged container a QEMU/KVM host.

``for_host()`` and ``portable()`` decide what goes in (plain data), ``render()`` turns the decision into
the YAML a person pastes into ``lxc profile edit`` (templates in ``profiles/`` and ``cloud-init/``), and
``parse()`` reads such YAML back strictly for applying it through the API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import yaml

from ..errors import LxdkvmError
from ..machine import hostcaps
from ..templating import render_template

# Packages the cloud-init user-data installs; no recommends (qemu-system-x86 would pull a GUI).
PACKAGES = ["libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils",
            "dnsmasq-base", "iptables", "bridge-utils",  # bridge-utils: ifupdown's in-host lab bridges
            # what users' own clients need on a host: Ansible's community.libvirt modules (python3-libvirt,
            # python3-lxml) and become_user to an unprivileged user without pipelining (acl's setfacl)
            "python3-libvirt", "python3-lxml", "acl"]
PORTABLE_MODULES = {
    "intel": ["kvm", "kvm_intel", "vhost", "vhost_net", "vhost_vsock", "vhost_scsi", "tun", "tap"],
    "amd": ["kvm", "kvm_amd", "vhost", "vhost_net", "vhost_vsock", "vhost_scsi", "tun", "tap"],
}
CLOUD_INIT_KEYS = {"modern": "cloud-init.user-data", "legacy": "user.user-data"}
IDMAPS = ("isolated", "shared")


@dataclass(frozen=True)
class UnixChar:
    name: str
    path: str
    mode: str
    gid: int = 0
    uid: int = 0
    required: bool = False


@dataclass
class ProfileSpec:
    description: str
    modules: list[str]
    devices: list[UnixChar]
    idmap: str = "isolated"
    cloud_init_keys: str = "modern"
    install_packages: bool = True  # False for a baked image that has libvirt/QEMU already
    ssh_user: str = ""  # a lab's user for SSH (Ansible), with passwordless sudo and ...
    ssh_key: str = ""  # ... the lab's public key (see sshkeys); none in the portable profiles

    @property
    def kvm_group_devices(self) -> list[str]:
        """The devices cloud-init hands to the image's kvm group: all but the world-usable tun."""
        return [d.path for d in self.devices if d.mode == "0660"]


def _devices(paths: list[str], kvm_gid: int) -> list[UnixChar]:
    """Device entries: /dev/kvm required, the rest optional; kvm and vhost for the kvm group only."""
    devices = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if path == "/dev/net/tun":
            # Opening tun is harmless by itself: creating an interface needs CAP_NET_ADMIN in the
            # network namespace, so it is world-usable on every distribution.
            devices.append(UnixChar(name, path, mode="0666"))
        else:
            devices.append(UnixChar(name, path, mode="0660", gid=kvm_gid, required=path == "/dev/kvm"))
    return devices


def _check(idmap: str, cloud_init_keys: str) -> None:
    if idmap not in IDMAPS:
        raise LxdkvmError(f"--idmap must be one of {', '.join(IDMAPS)}, not {idmap!r}")
    if cloud_init_keys not in CLOUD_INIT_KEYS:
        raise LxdkvmError(f"--cloud-init-keys must be modern or legacy, not {cloud_init_keys!r}")


def for_host(facts: hostcaps.HostFacts, *, kvm_gid: int = 0, idmap: str = "isolated",
             cloud_init_keys: str = "modern", install_packages: bool = True) -> ProfileSpec:
    """Only what this host provides in a way LXD accepts: a listed module LXD cannot find or load
    stops the container from starting, and so does a missing device that is required."""
    _check(idmap, cloud_init_keys)
    modules = [s.name for s in hostcaps.all_module_status(facts) if s.lxd_ok]
    paths = [p for p, d in facts.devices.items() if d.exists and d.is_char]
    return ProfileSpec(
        description=f"lxdkvm KVM host (for this host: kernel {facts.kernel})",
        modules=modules, devices=_devices(paths, kvm_gid), idmap=idmap,
        cloud_init_keys=cloud_init_keys, install_packages=install_packages,
    )


def portable(cpu: str, *, kvm_gid: int = 0, idmap: str = "isolated",
             cloud_init_keys: str = "modern", install_packages: bool = True) -> ProfileSpec:
    """The profile for a typical host with loadable modules and every vhost device."""
    _check(idmap, cloud_init_keys)
    if cpu not in PORTABLE_MODULES:
        raise LxdkvmError(f"--cpu must be intel or amd, not {cpu!r}")
    paths = list(hostcaps.DEVICES)
    return ProfileSpec(
        description=f"lxdkvm KVM host (portable, {cpu} CPU)",
        modules=PORTABLE_MODULES[cpu], devices=_devices(paths, kvm_gid), idmap=idmap,
        cloud_init_keys=cloud_init_keys, install_packages=install_packages,
    )


def user_data(spec: ProfileSpec) -> str:
    return render_template("cloud-init", "kvm-host.user-data.j2", packages=PACKAGES,
                           kvm_group_devices=spec.kvm_group_devices, install_packages=spec.install_packages,
                           ssh_user=spec.ssh_user if spec.ssh_key else "", ssh_key=spec.ssh_key)


def render(spec: ProfileSpec, header: str = "") -> str:
    """The profile as YAML for `lxc profile edit` (and for `parse`)."""
    text = render_template(
        "profiles", "kvm-host.yaml.j2",
        description=spec.description, modules=spec.modules, idmap=spec.idmap,
        cloud_init_key=CLOUD_INIT_KEYS[spec.cloud_init_keys], user_data=user_data(spec),
        devices=[asdict(d) for d in spec.devices],
    )
    if header:
        text = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + text
    return text


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str = "<string>"):
    """Parse YAML, refusing duplicate keys; errors name the source and line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise LxdkvmError(f"{where}: {getattr(exc, 'problem', None) or exc}") from None


def parse(text: str, source: str = "<profile>") -> dict:
    """Read profile YAML into the body LXD's API takes, checking what `lxc profile edit` would."""
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise LxdkvmError(f"{source}: a profile is a mapping with config and devices")
    unknown = set(data) - {"name", "description", "config", "devices"}
    if unknown:
        raise LxdkvmError(f"{source}: unknown profile keys: {', '.join(sorted(unknown))}")
    config = data.get("config") or {}
    devices = data.get("devices") or {}
    for key, value in config.items():
        if not isinstance(value, str):
            raise LxdkvmError(f"{source}: config.{key} must be a quoted string, not {value!r}")
    for name, device in devices.items():
        for key, value in device.items():
            if not isinstance(value, str):
                raise LxdkvmError(f"{source}: devices.{name}.{key} must be a quoted string, not {value!r}")
        if device.get("type") == "disk" and device.get("path") == "/":
            raise LxdkvmError(f"{source}: devices.{name}: a KVM profile must not add a root disk")
    if config.get("security.privileged") == "true":
        raise LxdkvmError(f"{source}: lxdkvm containers stay unprivileged (security.privileged)")
    return {"description": data.get("description", ""), "config": config, "devices": devices}


def committed_profiles() -> dict[str, str]:
    """The ready-to-paste profiles kept in profiles/ (file name -> text); a test checks they match."""
    files = {}
    for cpu, vendor in (("intel", "Intel"), ("amd", "AMD")):
        header = (
            f"lxdkvm KVM host profile, portable, for a host with an {vendor} CPU.\n"
            "Rendered from profiles/kvm-host.yaml.j2 by `invoke render-profiles`: do not edit by hand.\n"
            "Use:  lxc profile create kvm-host\n"
            f"      lxc profile edit kvm-host < profiles/kvm-host-{cpu}.yaml\n"
            "      lxc launch <image> kvm1 --profile default --profile kvm-host\n"
            "Devices are created root:root; cloud-init hands /dev/kvm and /dev/vhost-* to the image's\n"
            "kvm group (0660) at boot. Set gid to that group's GID to have it from the first instant."
        )
        files[f"kvm-host-{cpu}.yaml"] = render(portable(cpu), header=header)
    return files
