"""The few exceptions lxdkvm raises. Library code raises them; only the CLI turns them into exits."""


class LxdkvmError(Exception):
    """A problem the user can act on; the message is one clear line."""


class LxdUnavailable(LxdkvmError):
    """The LXD daemon cannot be reached (not installed, not running, no permission)."""


class LxdRefused(LxdkvmError):
    """LXD refused a request or a background operation failed. The message says what lxdkvm was doing,
    LXD's own words and, for failures lxdkvm knows, what to do; `lxd_message` is LXD's words alone."""

    def __init__(self, message: str, lxd_message: str) -> None:
        super().__init__(message)
        self.lxd_message = lxd_message
