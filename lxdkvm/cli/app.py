"""The `lxdkvm` group: its options (which daemon), and every command group's commands.

Each command imports the library it calls when it runs, so `lxdkvm --help` and the quick commands do not
pay for pylxd, pydantic or Jinja (tests/unit/test_cli_imports.py keeps it so).
"""

from __future__ import annotations

import dataclasses
import sys

import click

from . import clients, cluster, guests, images, lab, machine, outputs, snapshots, workbench
from .common import asks_for_json, daemon_option, print_json, run


class Lxdkvm(click.Group):
    """The command group. A usage error of a command asked for JSON (an unknown option, a missing argument)
    is also the error document on stdout; click says it on stderr and exits 2, as for any usage error."""

    argv: list[str] = []

    def main(self, args=None, *rest, **options):
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().main(args, *rest, **options)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if asks_for_json(self.argv):
                from ..outputs import documents

                print_json(documents.error("usage", exc.format_message()))
            raise


@click.group(cls=Lxdkvm, context_settings={"help_option_names": ["-h", "--help"]},
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
                *clients.COMMANDS, *cluster.COMMANDS, *snapshots.COMMANDS, *workbench.COMMANDS]:
    main.add_command(command)
outputs.attach_completion(main)


if __name__ == "__main__":
    main()
