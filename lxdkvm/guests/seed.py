"""The NoCloud seed of a guest whose image runs cloud-init: meta-data, network-config and user-data in
an ISO 9660 image labelled `cidata` (Rock Ridge and Joliet names), attached as a read-only disk.

Pure: everything is built in memory (pycdlib), nothing runs in a host. The network config is the one
the tiny guest reads from `lxdkvm.net=`: one entry per NIC, matched by MAC, static or DHCP.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable

import yaml

from ..labfile.userdata import DEFAULT_USER_DATA, check_user_data
from . import domain

__all__ = ["DEFAULT_USER_DATA", "check_user_data", "files", "iso", "seed_iso"]

LABEL = "cidata"
# ISO 9660 level 1 names (8.3, upper case) for readers without Rock Ridge or Joliet
ISO_NAMES = {"meta-data": "METADATA.;1", "network-config": "NETWORK.;1", "user-data": "USERDATA.;1"}


def instance_id(name: str, spec: dict) -> str:
    """NAME-HASH: a new spec is a new instance for cloud-init (it runs its per-instance modules again)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{domain.check_name(name)}-{digest[:12]}"


def meta_data(name: str, spec: dict) -> str:
    return yaml.safe_dump({"instance-id": instance_id(name, spec), "local-hostname": domain.check_name(name)},
                          sort_keys=False)


def network_config(nics: Iterable[domain.GuestNic]) -> str:
    """cloud-init network config v2: eth0, eth1, … by MAC; `gateway4` (ifupdown's own `gateway`), since
    Debian's cloud-init renders v2 routes as `route add`, and the disk has no net-tools."""
    ethernets = {}
    for index, nic in enumerate(nics):
        domain.check_nic(nic)
        entry: dict[str, object] = {"match": {"macaddress": nic.mac}, "set-name": f"eth{index}"}
        if nic.address is None:
            entry["dhcp4"] = True
        else:
            entry["dhcp4"] = False
            entry["addresses"] = [nic.address]
            if nic.gateway:
                entry["gateway4"] = nic.gateway
        ethernets[f"eth{index}"] = entry
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=False)


def files(name: str, spec: dict, nics: Iterable[domain.GuestNic], user_data: str | None) -> dict[str, str]:
    return {"meta-data": meta_data(name, spec), "network-config": network_config(nics),
            "user-data": check_user_data(user_data)}


def iso(contents: dict[str, str]) -> bytes:
    """An ISO 9660 image labelled cidata holding CONTENTS (file name → text)."""
    import pycdlib  # here: only a guest with a seed needs it

    image = pycdlib.PyCdlib()
    image.new(interchange_level=1, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    try:
        for filename, text in contents.items():
            data = text.encode()
            image.add_fp(io.BytesIO(data), len(data), f"/{ISO_NAMES[filename]}", rr_name=filename,
                         joliet_path=f"/{filename}")
        out = io.BytesIO()
        image.write_fp(out)
    finally:
        image.close()
    return out.getvalue()


def seed_iso(name: str, spec: dict, nics: Iterable[domain.GuestNic], user_data: str | None = None) -> bytes:
    return iso(files(name, spec, nics, user_data))
