"""What a value of a lab file may look like: small validators over strings, each answering None (fine) or
the reason it is not, as the end of a sentence ("is not a boolean (true or false)").

Lab files are untrusted and their values end up in LXD's config, LXC's config file, cloud-init seeds and
qemu-img command lines, so every validator here says what a value *is* (an allow-list), never what it
must not contain. Numbers are ASCII digits only: `[0-9]`, never `\\d`, which also matches `١٢٨` and the
other decimal digits of Unicode that Python's int() and float() would accept. Patterns are matched with
`fullmatch` (`$` would let a trailing line break through).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[str], "str | None"]

TRUE = frozenset({"true", "1", "yes", "on"})  # LXD's shared.IsTrue (case-insensitive)
FALSE = frozenset({"false", "0", "no", "off"})  # LXD's shared.IsFalse
UNITS = {"B": 1, "kB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30,
         "TB": 10**12, "TiB": 2**40}
SIZE = re.compile(r"([0-9]{1,20})(\.[0-9]{1,9})?(B|kB|KiB|MB|MiB|GB|GiB|TB|TiB)")
SHARE = re.compile(r"([0-9]{1,3})%")
MAX_BYTES = 2**63 - 1  # what LXD, QEMU and qemu-img read sizes into
MAX_TEXT = 4096  # characters of one line of free text (user.*, environment.*)


# ---------------------------------------------------------------------------------------- building blocks
def matches(pattern: str, what: str) -> Check:
    """A validator: the whole value matches PATTERN, else "is not WHAT"."""
    compiled = re.compile(pattern)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else f"is not {what}"
    return described(check, what)


def described(check: Check, what: str) -> Check:
    """CHECK, with the words that say what it accepts (docs/labs.md's tables show them)."""
    check.what = what  # type: ignore[attr-defined]
    return check


def accepts(check: Check) -> str:
    return getattr(check, "what", "")


def one_of(*words: str) -> Check:
    return matches("|".join(re.escape(w) for w in words), " or ".join(words))


def boolean(value: str) -> str | None:
    return None if value.lower() in TRUE | FALSE else "is not a boolean (true or false)"


described(boolean, "a boolean (true or false)")


def is_false(value: str) -> bool:
    return value.lower() in FALSE


def integer(low: int, high: int) -> Check:
    """An integer from LOW to HIGH written in ASCII digits (a leading - when LOW is negative)."""
    def check(value: str) -> str | None:
        if not re.fullmatch(r"-?[0-9]{1,19}", value) or not low <= int(value) <= high:
            return f"is not an integer from {low} to {high}"
        return None
    return described(check, f"an integer from {low} to {high}")


PRIORITY = integer(0, 10)
COUNT = integer(0, 2**31 - 1)
UINT32 = integer(0, 2**32 - 1)


def one_line(value: str) -> str | None:
    """Free text on one line: printable characters (any script), no control or separator characters."""
    if len(value) > MAX_TEXT:
        return f"is longer than {MAX_TEXT} characters"
    return None if value.isprintable() else "is not one line of printable text"


described(one_line, f"one line of printable text (at most {MAX_TEXT} characters)")


def lines_of(pattern: str, what: str, most: int = 512) -> Check:
    """Text of lines (`\\n`-separated, a final line break allowed), each matching PATTERN."""
    line = re.compile(pattern)

    def check(value: str) -> str | None:
        items = value.removesuffix("\n").split("\n")
        if len(items) > most or not all(line.fullmatch(item) for item in items):
            return f"is not {what}, one per line (at most {most})"
        return None
    return described(check, f"{what}, one per line")


def size_bytes(text: str) -> int | None:
    """`2GiB` → 2147483648, `1.5MiB` → 1572864 (ASCII digits, B to TiB, no spaces); None if it is not a size."""
    match = SIZE.fullmatch(text)
    if not match:
        return None
    whole, fraction, unit = match.groups()
    scale = 10 ** (len(fraction) - 1) if fraction else 1
    number = int(whole) * scale + (int(fraction[1:]) if fraction else 0)
    return number * UNITS[unit] // scale


def positive_size(value: str) -> str | None:
    size = size_bytes(value)
    if size is None or "." in value:
        return "is not a size such as 64MiB (B, kB, KiB, MB, MiB, GB, GiB, TB or TiB)"
    if size == 0:
        return "is zero"
    return None if size <= MAX_BYTES else "is larger than any machine has"


described(positive_size, "a size such as 64MiB")


# ---------------------------------------------------------------------------------------- value syntaxes
SYSCALLS = lines_of(r"[a-z0-9_]{1,64}", "a list of system call names")
RLIMIT = matches(r"(unlimited|[0-9]{1,19})(:(unlimited|[0-9]{1,19}))?",
                 "a limit: a number or unlimited, or soft:hard")
CPU_ALLOWANCE = matches(r"[0-9]{1,4}%|[0-9]{1,9}ms/[0-9]{1,9}ms", "a CPU allowance such as 50% or 25ms/100ms")
CRON_ALIAS = r"@(hourly|daily|midnight|weekly|monthly|annually|yearly|startup|never)"
CRON_FIELD = r"[0-9A-Za-z*,/-]{1,32}"
SCHEDULE = matches(rf"{CRON_ALIAS}(, ?{CRON_ALIAS}){{0,8}}|{CRON_FIELD}( {CRON_FIELD}){{4}}",
                   "a schedule: five cron fields or @hourly, @daily, … aliases")
EXPIRY = matches(r"[0-9]{1,4}[MHdwmy]( [0-9]{1,4}[MHdwmy]){0,5}", "an expiry such as 1d or 2w 3d")
# LXD renders snapshots.pattern as a pongo2 template: only plain text and %d (the snapshot's number).
SNAPSHOT_PATTERN = matches(r"([A-Za-z0-9_-]|%d){1,64}", "a snapshot name of letters, digits, - and _ "
                                                       "(with %d for the number)")
MODULES = matches(r"[a-z0-9_-]{1,64}(,[a-z0-9_-]{1,64}){0,63}", "a comma-separated list of module names")
FILESYSTEMS = matches(r"[a-z0-9_.-]{1,64}(,[a-z0-9_.-]{1,64}){0,63}", "a comma-separated list of file systems")
SYSCTL_VALUE = matches(r"[A-Za-z0-9 ._:/+-]{1,256}", "a sysctl value (letters, digits, space and ._:/+-)")

# NIC values
MTU = integer(576, 9000)
RATE = matches(r"[1-9][0-9]{0,11}(bit|kbit|Mbit|Gbit|Tbit)", "a rate such as 10Mbit (bit, kbit, Mbit, Gbit "
                                                             "or Tbit per second)")
IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")


def interface_name(value: str) -> str | None:
    """A Linux interface name: at most 15 bytes, no `/`, `:`, space or control character, not `.`/`..`."""
    return None if IFNAME.fullmatch(value) and value.strip(".") else \
        "is not an interface name (1-15 of letters, digits, _ . -)"


def unicast_mac(value: str) -> str | None:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", value):
        return "is not a MAC address such as 00:16:3e:12:34:56"
    if int(value[:2], 16) & 1:
        return "is a multicast MAC address (the first octet is odd)"
    return "is the all-zero MAC address" if int(value.replace(":", ""), 16) == 0 else None
