"""Handing the terminal to the daemon's own client: `lxc exec` (`incus exec` on Incus)."""

from __future__ import annotations

import os

from ..errors import LxdkvmError


def exec_interactive(session, project: str, name: str, command: list[str]) -> None:
    """Replace this process with `lxc exec --project PROJECT NAME -- COMMAND`: a terminal, signals and exit
    status come for free. The client reaches the session's daemon through the environment it is given."""
    check_host(session, project, name)
    client = session.daemon.client
    os.execvpe(client, [client, "exec", "--project", project, name, "--", *command],
               session.settings.child_env())


def check_host(session, project: str, name: str) -> None:
    """Raise LxdkvmError unless lab project PROJECT exists and has a host NAME (`lxdkvm exec` and the
    Python API's `Lab.exec` say the same thing)."""
    if not session.projects.exists(project):
        raise LxdkvmError(f"no lab project {project}: is the lab up? (`lxdkvm status`)")
    if not session.lab(project).instances.exists(name):
        raise LxdkvmError(f"lab project {project} has no host {name} (`lxdkvm status` lists them)")
