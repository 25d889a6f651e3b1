"""A local LXD cluster for trying and testing cluster mode: `lxdkvm cluster sandbox up|down|status`.

N extra LXD daemons beside the machine's own, the way LXD's test suite runs its clusters: a host bridge,
per member a namespace holder (holder.sh: new mount and network namespaces) with a veth into the bridge,
and `LXD_DIR=<root>/mN nsenter -n -m -t <holder> lxd`. Each member's directory persists, so `up` after
the daemons (or the machine) restarted starts the same cluster again; `down` removes every trace:
daemons and everything they started, holders, veths, the bridge, the NAT rule, the directories.

Never the main LXD's directory: every member has its own LXD_DIR under ROOT, and nothing here chroots.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..errors import LxdkvmError
from .members import (
    BRIDGE,
    IMAGES,
    POOL,
    POOL_SIZE,
    PORT,
    ROOT,
    Member,
    Report,
    _alive,
    _ensure_bridge,
    _ensure_holder,
    _link_exists,
    _ns,
    _pid,
    _remove_bridge,
    _run,
    _safe_root,
    members,
    recorded_count,
)


def _daemon_pid(member: Member) -> int | None:
    return _pid(member.state / "lxd.pid")


def _start_daemon(member: Member, holder: int, say: Report) -> None:
    if _daemon_pid(member) is not None:
        return
    member.lxd_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(member.lxd_dir, 0o711)
    log = member.state / "lxd.log"
    with open(os.devnull, "rb") as devnull, open(log, "ab") as out:
        proc = subprocess.Popen(["nsenter", "-n", "-m", "-t", str(holder), "lxd", "--group", "root",
                                 "--logfile", str(log)], stdin=devnull, stdout=out, stderr=out,
                                env=member.env(), start_new_session=True, close_fds=True)
    (member.state / "lxd.pid").write_text(str(proc.pid))  # nsenter execs lxd: the same pid
    say(f"{member.name}: LXD daemon {proc.pid} (LXD_DIR={member.lxd_dir})")


def _wait_ready(member: Member, timeout: int = 120) -> None:
    proc = _run(["lxd", "waitready", f"--timeout={timeout}"], f"{member.name}: waiting for LXD",
                env=member.env(), check=False, timeout=timeout + 10)
    if proc.returncode != 0:
        tail = (member.state / "lxd.log").read_text(errors="replace").strip().splitlines()[-3:] \
            if (member.state / "lxd.log").exists() else []
        raise LxdkvmError(f"{member.name}: LXD did not become ready: {proc.stderr.strip()} "
                          f"(log {member.state / 'lxd.log'}: {' | '.join(tail)})")


def _clustered(member: Member) -> bool:
    return (member.lxd_dir / "cluster.crt").exists() and (member.lxd_dir / "database" / "global").exists()


def _bootstrap(member: Member, say: Report) -> None:
    preseed = f"""config:
  core.https_address: {member.address}:{PORT}
  images.auto_update_interval: 0
storage_pools:
- name: {POOL}
  driver: btrfs
  config:
    size: {POOL_SIZE}
profiles:
- name: default
  devices:
    root: {{path: /, pool: {POOL}, type: disk}}
cluster:
  server_name: {member.name}
  enabled: true
"""
    _run(["lxd", "init", "--preseed"], f"{member.name}: bootstrapping the cluster", env=member.env(), stdin=preseed)
    say(f"{member.name}: bootstrapped the cluster")


def _join(member: Member, first: Member, say: Report) -> None:
    token = _run(["lxc", "cluster", "add", "--quiet", member.name], f"{member.name}: asking for a join token",
                 env=first.env()).stdout.strip()
    cert = (first.lxd_dir / "cluster.crt").read_text()
    indented = "\n".join("    " + line for line in cert.strip().splitlines())
    preseed = f"""cluster:
  enabled: true
  server_name: {member.name}
  server_address: {member.address}:{PORT}
  cluster_address: {first.address}:{PORT}
  cluster_certificate: |
{indented}
  cluster_token: {token}
  member_config:
  - {{entity: storage-pool, name: {POOL}, key: size, value: {POOL_SIZE}}}
"""
    _run(["lxd", "init", "--preseed"], f"{member.name}: joining the cluster", env=member.env(), stdin=preseed)
    say(f"{member.name}: joined the cluster")


def _fingerprints(env: dict[str, str]) -> dict[str, str]:
    proc = _run(["lxc", "image", "list", "--format", "csv", "-c", "lf"], "listing images", env=env, check=False)
    return {line.split(",")[0]: line.split(",")[1] for line in proc.stdout.splitlines() if line.count(",") >= 1}


def _copy_images(first: Member, say: Report) -> None:
    """The main LXD's lxdkvm images, exported and imported into the cluster when it lacks them or has
    other ones (the main LXD's were baked again)."""
    main_env = {k: v for k, v in os.environ.items() if k != "LXD_DIR"}
    main, have = _fingerprints(main_env), _fingerprints(first.env())
    for alias in IMAGES:
        if alias not in main:
            say(f"the main LXD has no image {alias}: `lxdkvm image bake` there, then `sandbox up` again")
            continue
        if have.get(alias) == main[alias]:
            continue
        work = ROOT / "run" / "image-export"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            _run(["lxc", "image", "export", alias, str(work / "image")], f"exporting image {alias}",
                 env=main_env, timeout=600)
            files = sorted(work.iterdir(), key=lambda p: (".root" in p.name or p.name.endswith(".squashfs"), p.name))
            if alias in have:
                _run(["lxc", "image", "alias", "delete", alias], f"replacing image {alias}", env=first.env())
            _run(["lxc", "image", "import", *map(str, files), "--alias", alias],
                 f"importing image {alias} into the cluster", env=first.env(), timeout=600)
            if alias in have and have[alias] not in main.values():
                _run(["lxc", "image", "delete", have[alias]], "", env=first.env(), check=False)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"image {alias} copied from the main LXD ({main[alias]})")


def up(count: int = 3, say: Report = lambda _m: None, images: bool = True) -> dict:
    """Form (or start again) a COUNT-member cluster. Safe to repeat."""
    _safe_root()
    if os.geteuid() != 0:
        raise LxdkvmError("the cluster sandbox needs root (network namespaces, a bridge, LXD daemons)")
    existing = recorded_count()
    if existing and existing != count:
        raise LxdkvmError(f"the sandbox has {existing} members, not {count}: `lxdkvm cluster sandbox down` first")
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o711)
    _ensure_bridge(say)
    group = members(count)
    holders = {m.name: _ensure_holder(m, say) for m in group}
    formed = [m for m in group if _clustered(m)]
    for member in formed:  # a cluster that was formed before: every member at once (quorum)
        _start_daemon(member, holders[member.name], say)
    for member in formed:
        _wait_ready(member)
    for member in group:
        if member in formed:
            continue
        _start_daemon(member, holders[member.name], say)
        _wait_ready(member)
        if member.index == 1:
            _bootstrap(member, say)
        else:
            _join(member, group[0], say)
    _wait_online(count)
    if images:
        _copy_images(group[0], say)
    return status(count)


def _pool_ready(member: Member) -> bool:
    """The member's pool is mounted (a restarted daemon brings its pools up after it answers)."""
    return _run(["lxc", "query", f"/1.0/storage-pools/{POOL}/resources?target={member.name}"], "",
                env=member.env(), check=False).returncode == 0


def _wait_online(count: int, timeout: float = 90) -> None:
    """Until the cluster lists every member online (a restarted member is "offline" until its heartbeat) and
    every member's pool is available."""
    deadline = time.monotonic() + timeout
    while True:
        states = [m["state"] for m in status(count)["members"]]
        if states == ["ONLINE"] * count and all(_pool_ready(m) for m in members(count)):
            return
        if time.monotonic() > deadline:
            raise LxdkvmError(f"the sandbox's members are not all online after {timeout:.0f}s: {states} "
                              f"(logs: {ROOT / 'run'}/mN/lxd.log)")
        time.sleep(1)


def _processes_in(holder: int) -> list[int]:
    """Every process that shares the holder's network or mount namespace (the daemon, its dnsmasq and
    forkdns, the containers' monitors), except the holder itself."""
    net, mnt = _ns(holder, "net"), _ns(holder, "mnt")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != holder:
            pid = int(entry.name)
            if (net and _ns(pid, "net") == net) or (mnt and _ns(pid, "mnt") == mnt):
                found.append(pid)
    return found


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop(count: int | None = None, say: Report = lambda _m: None) -> None:
    """Stop the daemons (their containers with them) and the holders; keep the directories: `up` starts
    the same cluster again. What a reboot of the members does."""
    group = members(count or recorded_count())
    running = [m for m in group if _daemon_pid(m) is not None]
    procs = {m.name: subprocess.Popen(["lxd", "shutdown", "--timeout=60"], env=m.env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for m in running}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
        say(f"{name}: LXD stopped")
    killed = []
    for member in group:
        daemon = _daemon_pid(member)
        if daemon:
            killed.append(daemon)
            _kill([daemon])
        holder = _pid(member.state / "holder.pid")
        if holder:
            inside = _processes_in(holder)
            killed += [*inside, holder]
            _kill([*inside, holder])
        for pid_file in ("lxd.pid", "holder.pid"):
            (member.state / pid_file).unlink(missing_ok=True)
        if _link_exists(member.veth):
            _run(["ip", "link", "del", member.veth], f"{member.name}: deleting its veth", check=False)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.1)


def _loops_under(root: Path) -> list[str]:
    proc = _run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], "", check=False)
    return [line.split()[0] for line in proc.stdout.splitlines()
            if len(line.split()) > 1 and line.split()[1].startswith(str(root))]


def _force_stop_instances(group: list[Member], say: Report) -> None:
    running = [m for m in group if _daemon_pid(m) is not None]
    if not running:
        return
    listing = _run(["lxc", "list", "--all-projects", "--format", "json"], "", env=running[0].env(), check=False)
    try:
        instances = json.loads(listing.stdout or "[]")
    except ValueError:
        return
    for instance in instances:
        if instance.get("status") == "Running":
            _run(["lxc", "stop", "--force", "--project", instance.get("project", "default"), instance["name"]],
                 "", env=running[0].env(), check=False, timeout=60)
            say(f"stopped {instance.get('project', 'default')}/{instance['name']} on {instance.get('location')}")


def down(say: Report = lambda _m: None) -> None:
    """Remove the sandbox completely: daemons, holders, veths, bridge, NAT rule, loop devices, directories."""
    _safe_root()
    _force_stop_instances(members(recorded_count()), say)  # everything goes: no clean shutdown to wait for
    stop(recorded_count() or None, say)
    if ROOT.exists():  # mounts are in the holders' namespaces, gone with them; any left here are removed
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            target = line.split()[4]
            if target == str(ROOT) or target.startswith(f"{ROOT}/"):
                _run(["umount", "-l", target], f"unmounting {target}", check=False)
    for loop in _loops_under(ROOT):
        _run(["losetup", "-d", loop], f"detaching {loop}", check=False)
    _remove_bridge()
    if ROOT.exists():
        shutil.rmtree(ROOT)
        say(f"removed {ROOT}")


def status(count: int | None = None) -> dict:
    """Members as this machine sees them (directories, holders, daemons) and as the cluster lists them."""
    group = members(count or recorded_count())
    out = {"root": str(ROOT), "bridge": BRIDGE if _link_exists(BRIDGE) else None, "members": []}
    for member in group:
        out["members"].append({"name": member.name, "address": str(member.address), "lxd_dir": str(member.lxd_dir),
                               "holder": _pid(member.state / "holder.pid"), "daemon": _daemon_pid(member),
                               "clustered": _clustered(member)})
    listing = ""
    running = [m for m in group if _daemon_pid(m) is not None]
    if running:
        listing = _run(["lxc", "cluster", "list", "--format", "csv"], "listing the cluster",
                       env=running[0].env(), check=False).stdout
    states = {}
    for line in listing.splitlines():
        fields = line.split(",")
        if len(fields) >= 6:
            states[fields[0]] = fields[5] if fields[5] in ("ONLINE", "OFFLINE", "EVACUATED") else \
                next((f for f in fields if f in ("ONLINE", "OFFLINE", "EVACUATED")), "")
    for entry in out["members"]:
        entry["state"] = states.get(entry["name"], "")
    return out


def lxd_dir() -> str:
    """The LXD_DIR that points lxdkvm (and `lxc`) at the sandbox cluster: its first member."""
    return str(Member(1).lxd_dir)
