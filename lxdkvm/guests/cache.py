"""Publishing a finished build into lxdkvm's cache: a half-built cache entry never has the final name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish(built: Path, final: Path, force: bool = False) -> None:
    """Move BUILT to FINAL in one rename. With FORCE an existing FINAL is replaced; when another build
    finished first, theirs is as good as ours."""
    if force and final.exists():
        shutil.rmtree(final)
    try:
        os.rename(built, final)
    except OSError:
        if not final.is_dir():
            raise
