"""lxdkvm: multi-host QEMU/KVM labs in unprivileged LXD containers.

From Python: `from lxdkvm import Lab` (`lxdkvm.api`; docs/tools.md). The names below are imported
when first used, so `import lxdkvm` (and the `lxdkvm` command) stays cheap."""

__version__ = "0.1.0"
__all__ = ["ExecResult", "Lab", "LabInvalid", "LxdkvmError", "Migration"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lxdkvm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
