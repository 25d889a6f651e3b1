#!/usr/bin/python3
"""cloud-init's local and final stages in one process, installed in the baked KVM-host image by
`lxdkvm image bake` (see images/bake-lean-boot.sh): it runs as cloud-init-local.service.

Importing cloud-init costs ~0.15 CPU-s per process, and ten hosts boot at once on two cores, so the
final stage does not start a second interpreter. Nothing else changes: the local stage reads the NoCloud
seed, applies the network config and runs the init modules; then the unit reports ready (the network
comes up after it, as before); then this process waits, as cloud-final.service did, until the network is
online and the boot is done, and runs the final modules (apt, packages, runcmd, scripts), which write
cloud-init's result.json as before.
"""

import os
import socket
import subprocess
import sys

from cloudinit.cmd.main import main


def notify(state: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


if __name__ == "__main__":
    os.environ.setdefault("TZ", ":/etc/localtime")
    local = main(["cloud-init", "init", "--local"])
    # What the local stage printed (ssh key fingerprints) reaches cloud-init-output.log now, before the
    # final stage's output, as when it was its own process that exited here.
    sys.stdout.flush()
    sys.stderr.flush()
    notify("READY=1")
    # cloud-final.service's ordering: After=network-online.target multi-user.target
    subprocess.run(["systemctl", "start", "network-online.target", "multi-user.target"], check=False)
    # stdout and stderr already go through the local stage's `tee -a /var/log/cloud-init-output.log`:
    # a second tee would write every line of the final stage twice
    os.environ["_CLOUD_INIT_SAVE_STDOUT"] = "true"
    final = main(["cloud-init", "modules", "--mode=final"])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(1 if local or final else 0)
