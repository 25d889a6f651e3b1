"""Guest disk images this machine's owner imported, by name: the only files a lab file's guests may boot.

A lab file is shared like a topology and is untrusted: it names an image (`disk: {file: NAME}`), never a
path, so it cannot read an arbitrary file of this machine into a lab host. `lxdkvm guest-image import
FILE --name NAME` (run by root, on purpose) checks FILE with `qemu-img info` and keeps a standalone qcow2
copy in `$LXDKVM_STATE_DIR/guest-images/` (default /var/lib/lxdkvm/guest-images, mode 0700):

  - raw or qcow2 only (what qemu-img detects; no other container format is opened);
  - no backing file and no external data file: either would make QEMU in the host read another file;
  - no encryption (nothing could unlock it at boot), virtual size at most MAX_VIRTUAL.

The copy is made by `qemu-img convert` into a new qcow2, so whatever the original referred to is gone;
its sha256 is the key under which hosts keep it (the base of each guest's copy-on-write overlay).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import paths
from ..errors import LxdkvmError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
FORMATS = ("raw", "qcow2")
MAX_VIRTUAL = 256 * 2**30  # bytes


@dataclass(frozen=True)
class StoredImage:
    name: str
    sha256: str  # of the stored qcow2
    virtual_mib: int  # the disk's size as the guest sees it
    stored_bytes: int
    source: str  # where it was imported from (for people; never read again)
    source_format: str
    imported: str  # UTC time

    @property
    def key(self) -> str:
        return self.sha256[:16]


def root() -> Path:
    return paths.guest_images()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise LxdkvmError(f"invalid guest image name {name!r}: lowercase letters, digits, '.', '_' or '-' "
                          "(up to 63, starting with a letter or digit)")
    return name


def path(name: str) -> Path:
    return root() / f"{check_name(name)}.qcow2"


def _info(file: Path, fmt: str | None) -> dict:
    command = ["qemu-img", "info", "--output=json", *(["-f", fmt] if fmt else []), str(file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise LxdkvmError("qemu-img is not installed: apt-get install qemu-utils") from None
    if done.returncode != 0:
        raise LxdkvmError(f"{file}: qemu-img cannot read it: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


def inspect(file: Path, fmt: str | None = None) -> dict:
    """FILE's qemu-img information, or a refusal saying which rule it breaks and what to do."""
    if not file.is_file():
        raise LxdkvmError(f"{file}: not a regular file")
    info = _info(file, fmt)
    found = info.get("format")
    if found not in FORMATS:
        raise LxdkvmError(f"{file}: format {found!r} is not accepted (only {', '.join(FORMATS)}): convert it "
                          f"with `qemu-img convert -O qcow2 {file} OUT.qcow2`")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise LxdkvmError(f"{file}: it has a backing file ({info.get('backing-filename')}), which QEMU would "
                          f"read too: flatten it first with `qemu-img convert -O qcow2 {file} OUT.qcow2`")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise LxdkvmError(f"{file}: its data lives in another file ({specific['data-file']}): flatten it "
                          f"with `qemu-img convert -O qcow2 {file} OUT.qcow2`")
    if info.get("encrypted") or specific.get("encrypt"):
        raise LxdkvmError(f"{file}: it is encrypted; nothing could unlock it when the guest boots")
    if int(info.get("virtual-size", 0)) > MAX_VIRTUAL:
        raise LxdkvmError(f"{file}: its virtual size {int(info['virtual-size']) / 2**30:.0f} GiB is over "
                          f"{MAX_VIRTUAL // 2**30} GiB")
    return info


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_file(file: str | Path, name: str, fmt: str | None = None, force: bool = False) -> StoredImage:
    """Check FILE and keep a standalone qcow2 copy of it as NAME; FORCE replaces an image of that name."""
    file, target = Path(file), path(name)
    if target.exists() and not force:
        raise LxdkvmError(f"there is already a guest image {name}: pass --force to replace it, or pick "
                          "another --name")
    info = inspect(file, fmt)
    folder = root()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    part = folder / f".{name}.part"
    done = subprocess.run(["qemu-img", "convert", "-f", info["format"], "-O", "qcow2", str(file), str(part)], check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        part.unlink(missing_ok=True)
        raise LxdkvmError(f"{file}: qemu-img convert failed: {done.stderr.strip()[-400:]}")
    inspect(part, "qcow2")  # what we keep obeys the same rules
    stored = StoredImage(name=name, sha256=_sha256(part), virtual_mib=-(-int(info["virtual-size"]) // 2**20),
                         stored_bytes=part.stat().st_size, source=str(file.resolve()),
                         source_format=info["format"],
                         imported=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    os.chmod(part, 0o600)
    os.rename(part, target)
    (folder / f"{name}.json").write_text(json.dumps(asdict(stored), indent=2) + "\n")
    return stored


def get(name: str) -> StoredImage | None:
    meta = root() / f"{check_name(name)}.json"
    if not meta.is_file() or not path(name).is_file():
        return None
    return StoredImage(**json.loads(meta.read_text()))


def names() -> frozenset[str]:
    folder = root()
    if not folder.is_dir():
        return frozenset()
    return frozenset(p.stem for p in folder.glob("*.json") if NAME_RE.fullmatch(p.stem) and
                     (folder / f"{p.stem}.qcow2").is_file())


def listing() -> list[StoredImage]:
    return [image for image in (get(n) for n in sorted(names())) if image is not None]


def remove(name: str) -> bool:
    found = False
    for file in (path(name), root() / f"{name}.json"):
        if file.exists():
            file.unlink()
            found = True
    return found
