"""A guest's cloud-init user-data (and a host's cloud-init config keys), as a lab file gives it: checked
before anything is made, and written as cloud-init takes it.

A `#cloud-config` document is read with the lab file's own bounded reader (`yamlread.read_yaml`: at most
32 levels, 20,000 nodes and 20,000 values once aliases are expanded, plain YAML tags only), so that
10,000 nested `[` or an alias bomb in user-data is one clean problem, never a RecursionError or minutes
of expansion. `user_data_problem` says what is wrong in one line; `check_user_data` is the same check for
the code that writes the seed (it raises).
"""

from __future__ import annotations

from ..errors import LxdkvmError
from . import yamlread

DEFAULT_USER_DATA = "#cloud-config\n{}\n"
# The top-level keys of the kvm-host profile's user-data (cloud-init/kvm-host.user-data.j2; a unit test
# keeps this in step). cloud-init merges vendor-data under user-data key by key, so a vendor-data that
# sets one of these would be dropped without a word: it is refused instead.
HOST_USER_DATA_KEYS = ("apt", "bootcmd", "package_update", "packages", "runcmd", "users", "write_files")
OTHER_FORMATS = ("#!", "Content-Type:", "#include", "#cloud-boothook")


def _read(text: str | None) -> tuple[dict | None, str | None]:
    """(the #cloud-config mapping, None) when TEXT is one; (None, why not) when TEXT is not user-data
    cloud-init takes (one line, with the line of user-data it is about); (None, None) for another format
    cloud-init takes, or none at all."""
    if text is None or not text.strip():
        return None, None
    first = text.lstrip().splitlines()[0]
    if first.startswith("#cloud-config"):
        data, _, problems = yamlread.read_yaml(text)
        if problems:
            problem = problems[0]
            where = "" if problem.path == "(file)" else f"{problem.path}: "
            return None, f"user-data line {max(problem.line, 1)}: {where}{problem.message}"
        if data is not None and not isinstance(data, dict):
            return None, "user-data: a #cloud-config document must be a mapping"
        return data or {}, None
    if not first.startswith(OTHER_FORMATS):
        return None, "user-data must start with #cloud-config, #! (a script) or be MIME multipart"
    return None, None


def user_data_problem(text: str | None) -> str | None:
    """Why TEXT is not user-data cloud-init takes (one line, with the line of user-data it is about);
    None when it is, or when there is none."""
    return _read(text)[1]


def vendor_data_problem(text: str | None) -> str | None:
    """What `user_data_problem` finds, and a #cloud-config that sets a key of the kvm-host profile's own
    user-data (cloud-init would drop it: user-data wins, key by key). The text is read once."""
    data, problem = _read(text)
    taken = sorted(set(data or {}) & set(HOST_USER_DATA_KEYS))
    if problem or not taken:
        return problem
    return (f"vendor-data sets {', '.join(taken)}, which the kvm-host profile's user-data sets too: "
            "cloud-init would drop it (user-data wins); give those steps as a #! script instead")


def check_user_data(text: str | None) -> str:
    """User data as cloud-init takes it: a `#cloud-config` YAML mapping, a `#!` script or MIME multipart
    (the default: an empty #cloud-config). Raises LxdkvmError when it is not."""
    if text is None or not text.strip():
        return DEFAULT_USER_DATA
    if problem := user_data_problem(text):
        raise LxdkvmError(problem)
    return text if text.endswith("\n") else text + "\n"
