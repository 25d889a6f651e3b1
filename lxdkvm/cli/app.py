"""The `lxdkvm` group: its options (which daemon), and every command group's commands.

Each command imports the library it calls when it runs, so `lxdkvm --help` and the quick commands do not
pay for pylxd, pydantic or Jinja (tests/unit/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import dataclasses

import click

from . import cluster, guests, images, lab, machine, outputs, workbench
from .common import daemon_option, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Example: lxdkvm doctor && lxdkvm up && lxdkvm status --watch")
@daemon_option
@click.option("--lxd-dir", metavar="DIR", envvar="LXD_DIR",
              help="The LXD to use: its directory (its unix.socket), e.g. a member of the sandbox cluster. "
                   "Default: $LXD_DIR, else the machine's LXD.")
def main(lxd_dir: str | None) -> None:
    """Multi-host QEMU/KVM labs in unprivileged LXD (or Incus) containers."""
    if lxd_dir:
        chosen = run()
        chosen.settings = dataclasses.replace(chosen.settings, lxd_dir=lxd_dir)


for command in [*machine.COMMANDS, *images.COMMANDS, *lab.COMMANDS, *guests.COMMANDS, *outputs.COMMANDS,
                *cluster.COMMANDS, *workbench.COMMANDS]:
    main.add_command(command)
outputs.attach_completion(main)


if __name__ == "__main__":
    main()
