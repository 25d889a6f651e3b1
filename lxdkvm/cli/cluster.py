"""`lxdkvm cluster sandbox up|down|status`: a local LXD cluster to try and test cluster mode. Parse, call
`cluster.sandbox`, print."""

from __future__ import annotations

import click

from .common import errors, out, print_json, progress


@click.group(epilog="Example: lxdkvm cluster sandbox up && lxdkvm --lxd-dir "
                   "/var/lib/lxdkvm/cluster-sandbox/m1 up labs/cluster.yaml")
def cluster() -> None:
    """LXD clusters as the lab's target (docs/cluster.md)."""

@cluster.group(epilog="Example: lxdkvm cluster sandbox up --members 3")
def sandbox() -> None:
    """A local cluster of extra LXD daemons, for trying and testing cluster mode on one machine."""

def show(state: dict) -> None:
    for member in state["members"]:
        running = f"daemon {member['daemon']}" if member["daemon"] else "daemon stopped"
        out.print(f"{member['name']}  {member['address']}  {member['state'] or '-':8}  {running}  "
                  f"LXD_DIR={member['lxd_dir']}", highlight=False)
    if state["members"]:
        out.print(f"use it: lxdkvm --lxd-dir {state['members'][0]['lxd_dir']} up LAB "
                  f"(or export LXD_DIR={state['members'][0]['lxd_dir']})", highlight=False)
    else:
        out.print("no sandbox cluster (`lxdkvm cluster sandbox up`)")

@sandbox.command("up", epilog="Example: lxdkvm cluster sandbox up --members 3")
@click.option("--members", default=3, show_default=True, type=click.IntRange(1, 9),
              help="How many LXD daemons form the cluster.")
@click.option("--no-images", is_flag=True, help="Do not copy lxdkvm's images from the main LXD.")
def sandbox_up(members: int, no_images: bool) -> None:
    """Form the cluster, or start it again after its daemons (or the machine) restarted. Needs root."""
    from ..cluster import sandbox as sandbox_mod

    with errors():
        show(sandbox_mod.up(members, progress, images=not no_images))

@sandbox.command("down", epilog="Example: lxdkvm cluster sandbox down")
def sandbox_down() -> None:
    """Remove the cluster completely: daemons, their containers, namespaces, bridge, directories."""
    from ..cluster import sandbox as sandbox_mod

    with errors():
        sandbox_mod.down(progress)
    out.print("sandbox cluster removed")

@sandbox.command("stop", epilog="Example: lxdkvm cluster sandbox stop && lxdkvm cluster sandbox up")
def sandbox_stop() -> None:
    """Stop the daemons and namespaces but keep the cluster (`up` starts it again), like a reboot."""
    from ..cluster import sandbox as sandbox_mod

    with errors():
        sandbox_mod.stop(None, progress)

@sandbox.command("status", epilog="Example: lxdkvm cluster sandbox status --json")
@click.option("--json", "as_json", is_flag=True,
              help="Print the members as JSON (schemas/cluster-sandbox-status.schema.json).")
def sandbox_status(as_json: bool) -> None:
    """The members: address, state in the cluster, daemon, LXD_DIR."""
    from ..cluster import sandbox as sandbox_mod
    from ..outputs import documents

    with errors(as_json):
        state = sandbox_mod.status()
    if as_json:
        print_json(documents.sandbox_status(state))
    else:
        show(state)


COMMANDS = [cluster]
