"""The one package that talks to LXD or Incus (through pylxd).

It hands back lxdkvm's own plain values and raises lxdkvm's own errors, so nothing else in lxdkvm
imports pylxd or knows its exception types. `daemon` says which daemon (LXD or Incus) and why, `client`
is a connection (`Lxd`), `lab` a lab's operations (`LabLxd`), `messages` the daemon's own words for a
failure and what to do.
"""

from .client import (
                     CREATE_LOCK,
                     IDMAPPED_ROOT,
                     REQUIRED_EXTENSIONS,
                     SOCKETS,
                     ExecResult,
                     Lxd,
                     ServerFacts,
                     probe_server,
                     socket_path,
                     split_image_fingerprint,
                     wait_for_socket,
)
from .daemon import Daemon, incus_present, lxd_present
from .daemon import selected as selected_daemon
from .lab import LabLxd, exec_interactive
from .messages import HINTS, IMAGE_EXISTS, explain, hint, lxd_message, refusal

__all__ = ["CREATE_LOCK", "HINTS", "IDMAPPED_ROOT", "IMAGE_EXISTS", "REQUIRED_EXTENSIONS", "SOCKETS", "Daemon", "ExecResult",
           "LabLxd", "Lxd", "ServerFacts", "exec_interactive", "explain", "hint", "incus_present",
           "lxd_message", "lxd_present", "probe_server", "refusal", "selected_daemon", "socket_path",
           "split_image_fingerprint", "wait_for_socket"]
