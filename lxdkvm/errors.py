"""The few exceptions lxdkvm raises. Library code raises them; only the CLI turns them into exits."""


class LxdkvmError(Exception):
    """A problem the user can act on; the message is one clear line."""


class LxdUnavailable(LxdkvmError):
    """The LXD daemon cannot be reached (not installed, not running, no permission)."""
