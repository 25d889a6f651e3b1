"""LXD's own words for a failure, and what to do about it: the one place an LXD refusal becomes a message.

LXD answers a failed background operation with HTTP 200 and puts the reason in the operation's `err`;
`lxd_message` finds it wherever LXD put it, `explain` adds a "what to do" for failures people hit.
"""

from __future__ import annotations

import contextlib
import re

from pylxd import exceptions as pylxd_exc

from ..errors import LxdRefused

IMAGE_EXISTS = r"[Ii]mage with same fingerprint already exists"
# What to do about the LXD refusals lxdkvm knows: (pattern in LXD's own message, hint). First match wins.
HINTS = (
    (r"modprobe|kernel module",
     ("a module listed in linux.kernel_modules of the container's profiles cannot be loaded on this host "
      "(LXD runs modprobe for each one without a /sys/module entry): run `lxdkvm doctor` to see which "
      "modules this host can provide and drop the others from the profile (`lxdkvm profile apply` "
      "renders one for this host)")),
    (r"required device path doesn't exist|[Mm]issing source|unix-(char|block)",
     ("a device in the container's profiles has a source this host lacks: give it `required: \"false\"` "
      "or remove it; `lxdkvm doctor` lists the devices this host has")),
    (IMAGE_EXISTS,
     ("LXD already has this very image (under another alias): point the alias at it "
      "(`lxdkvm image build --alias NAME` does so)")),
    (r"[Nn]ot enough uid/gid",
     ("no free isolated id range is left for this container: delete containers that hold one, or widen "
      "root's ranges in /etc/subuid and /etc/subgid (`lxdkvm doctor` shows them)")),
    (r"[Nn]o root device|[Ss]torage pool not found|[Ff]ailed (to find|getting) (the )?storage pool",
     ("LXD has no storage for the container: run `lxdkvm setup` (on a cluster: the pool is not available on "
      "that member yet, `lxc storage show POOL --target MEMBER`; run `lxdkvm up` again once it is)")),
    ((r"https://[^ ]+/1\.0/[^ ]*\": (EOF|dial tcp)|:8443: connect: connection refused|[Mm]ember .* (is )?offline|"
      r"[Mm]issing event connection|[Cc]luster member .* unreachable"),
     ("a member of the LXD cluster does not answer: `lxc cluster list` shows which; start its LXD again "
      "(the sandbox: `lxdkvm cluster sandbox up`), then run `lxdkvm up` again, or place the lab's hosts "
      "elsewhere (`placement:`, docs/cluster.md)")),
    (r"ip link set dev [^ ]+-lk mtu|vxlan",
     ("the lab network's tunnel between cluster members cannot carry its MTU: lower `mtu:` of the network "
      "(docs/cluster.md)")),
    (r"[Ff]ailed (loading|getting) image|[Ii]mage not found",
     "LXD has no such image: `lxc image alias list` shows the images; `lxdkvm image build` makes the base image"),
)


def lxd_message(body: object, status: int | None = None, text: str = "") -> str:
    """LXD's own words for a failure, from a response body or an operation (plain data).

    A failed background operation is answered with HTTP 200 and the failure inside the operation
    (`metadata.err` of a /wait answer, `err` of the operation itself); a refused request carries
    `error`. Only when LXD says nothing is the status shown, with whatever text came back."""
    if isinstance(body, dict):
        metadata = body.get("metadata")
        operation_err = metadata.get("err") if isinstance(metadata, dict) else None
        for said in (operation_err, body.get("err"), body.get("error")):
            if said:
                return str(said).strip()
    detail = text.strip()[:300]
    return f"LXD answered HTTP {status} without an error message" + (f": {detail}" if detail else "")


def hint(message: str) -> str:
    return next((advice for pattern, advice in HINTS if re.search(pattern, message)), "")


def explain(what: str, message: str) -> str:
    """WHAT failed, LXD's message, and what to do when the failure is a known one."""
    advice = hint(message)
    return f"{what}: {message}" + (f"\n  what to do: {advice}" if advice else "")


def refusal(what: str, exc: pylxd_exc.LXDAPIException) -> LxdRefused:
    """The LxdkvmError for a pylxd exception: LXD's message, not pylxd's rendering of the response."""
    response = exc.response
    try:
        body = response.json()
    except ValueError:
        body = None
    message = lxd_message(body, getattr(response, "status_code", None), getattr(response, "text", ""))
    return LxdRefused(explain(what, message), message)


@contextlib.contextmanager
def _refused(what: str):
    """Inside: an LXD refusal becomes an LxdRefused that starts with WHAT."""
    try:
        yield
    except pylxd_exc.LXDAPIException as exc:
        raise refusal(what, exc) from None
