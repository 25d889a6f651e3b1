"""Load a lab: its file read and checked (`labfile`), with the facts of this machine and of the daemon
the checks need, and on a cluster its networks stretched over the members. Nothing is changed."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import LxdkvmError
from ..guests import store
from ..labfile import checks
from ..labfile import topology as t
from ..machine import hostcaps
from . import state

Allowances = checks.Allowances  # risks the user accepted on the command line (`--allow-*`)
NO_ALLOWANCES = Allowances()
LAB_COPY = "lab.yaml"  # in the lab's state directory: the file the last successful `up` used


def machine_facts(session, lab: t.Lab, allow: Allowances = NO_ALLOWANCES) -> checks.Machine:
    """What the checks need to know about this machine (and what the user allowed on the command line);
    the daemon's facts only with a SESSION. A daemon that does not answer yet (not installed, not started)
    is taken as `lxdkvm setup` will make it: no image but lxdkvm's own, its two pools. So the first check
    of a lab file is the one that decides: nothing is installed or created for a file that fails later."""
    from ..lxd import daemon
    from ..lxd.setup import lxd_installed
    from ..settings import Settings

    kind = session.daemon.kind if session is not None else daemon.selected(Settings.from_env()).kind
    host = hostcaps.read_host()
    facts = {"routes": tuple(hostcaps.routes()), "cpus": os.cpu_count(), "memory": hostcaps.mem_total(),
             "hardware_virt": hostcaps.hardware_virt(host) is not None, "allow": allow,
             "guest_images": {i.name: i.virtual_mib for i in store.listing()}}
    if lxd_installed(kind):  # LXD's package creates root's subordinate ids: unknown before it
        facts["isolated_capacity"] = min(hostcaps.isolated_capacity(host.subuid),
                                         hostcaps.isolated_capacity(host.subgid))
    if session is not None:
        facts.update(_daemon_facts(session, lab) if session.answers() else _fresh_daemon_facts())
    return checks.Machine(**facts)


def _daemon_facts(session, lab: t.Lab) -> dict:
    from ..lxd import idmaps

    try:
        scope = session.lab(lab.project)
        pools = session.server.facts().pools
        return {"isolated_elsewhere": idmaps.isolated_elsewhere(session.connection(), scope.project),
                "images": frozenset(session.images.aliases()), "pools": frozenset(p["name"] for p in pools),
                "cluster": scope.cluster(), "pool_free_mib": _pool_free_mib(session, lab, pools)}
    except LxdkvmError:
        return _fresh_daemon_facts()


def _pool_free_mib(session, lab: t.Lab, pools: list[dict]) -> int | None:
    """Free space of the pool the lab's hosts (and so its guests' disks) go on; a pool lxdkvm would make
    is as large as it would make it."""
    from ..machine import storage

    if lab.storage != "auto":
        return session.pools.free_mib(lab.storage) if any(p["name"] == lab.storage for p in pools) else None
    choice = storage.choose_pool(pools, storage.btrfs_support())
    if choice.create:
        return storage.mebibytes(dict(choice.config).get("size", "")) if choice.config else None
    return session.pools.free_mib(choice.name)


def _fresh_daemon_facts() -> dict:
    from ..lxd.setup import POOL
    from ..machine.storage import COW_POOL

    return {"images": frozenset(), "pools": frozenset({POOL, COW_POOL})}


def load(path: str | Path | None, session=None, allow: Allowances = NO_ALLOWANCES, machine: bool = True) -> t.Lab:
    """The lab from PATH (None: the embedded default lab), checked against this MACHINE's facts (without:
    its meaning alone, e.g. to draw it) and, with SESSION, against the daemon too (images, pools, id
    ranges, cluster). Raises LabInvalid with every problem."""
    from ..labfile import read  # pydantic: only the commands that read a lab file pay for it

    lab, problems, source = read.load(path)
    cluster = None
    if lab is not None:
        connect = session if checks.LAB_NAME.match(lab.name) else None  # never ask the daemon about a bad name
        facts = machine_facts(connect, lab, allow) if machine else checks.Machine(allow=allow)
        problems += checks.check(lab, facts)
        cluster = facts.cluster
        if cluster is not None:
            problems += cluster_problems(lab, cluster)
    if problems:
        raise t.LabInvalid(source, problems)
    return on_cluster(lab, cluster)


def cluster_problems(lab: t.Lab, cluster) -> list[t.Problem]:
    """On a cluster: placements name its members or groups, MTUs fit the tunnel between them."""
    from ..cluster import placement, stretch

    return [*placement.check(lab, cluster), *stretch.check(lab, cluster)]


def on_cluster(lab: t.Lab, cluster) -> t.Lab:
    """The lab as the daemon runs it: on a cluster, its networks stretched over the members."""
    if cluster is None:
        return lab
    from ..cluster import stretch

    return stretch.for_cluster(lab, cluster)


def lab_name(lab: str | Path | None) -> str:
    """A lab's name from its file, or LAB itself when it is not a file (a lab that is up)."""
    if lab is None or Path(lab).is_file():
        from ..labfile import read

        text, source = read.read(lab)  # bounded like `load`: the file is untrusted
        name, line = read.name_of(text, source)
        if not checks.LAB_NAME.match(name):  # it becomes a project and a lock file's name
            raise t.LabInvalid(source, [t.Problem("name", f"'{name}' is not a valid lab name",
                                                  checks.LAB_NAME_RULE, line)])
        return name
    name = str(lab)
    if name.endswith((".yaml", ".yml")) or "/" in name:
        raise LxdkvmError(f"no lab file {name}")
    if not checks.LAB_NAME.match(name):
        raise LxdkvmError(f"{name!r} is neither a lab file nor a lab name")
    return name


def remember(lab: t.Lab, path: str | Path | None) -> None:
    """Keep the file a successful `up` used in the lab's state directory."""
    from ..labfile import read

    (state.state_dir(lab.name) / LAB_COPY).write_text(read.read(path)[0])


def remembered(session, lab: str | Path | None) -> t.Lab:
    """The lab from its file, or, for the name of a lab that is up, from the file its last `up` used."""
    if lab is None or Path(lab).is_file():
        the_lab = load(lab)
    else:
        name = lab_name(lab)
        copy = state.path(name) / LAB_COPY
        if not copy.is_file():
            raise LxdkvmError(f"no lab file remembered for lab {name}: give the lab file instead of its name")
        the_lab = load(copy)
    try:
        cluster = session.lab(the_lab.project).cluster()
    except LxdkvmError:
        cluster = None
    return on_cluster(the_lab, cluster)
