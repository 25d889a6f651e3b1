"""The `lxdkvm` command (entry point `lxdkvm.cli:main`): one module per command group, each parsing its
arguments, calling one library function and printing the result."""

from .app import main

__all__ = ["main"]
