"""The security tests stand on the integration tests' fixtures: a real LXD daemon (installed, started and
initialised when missing) and lxdkvm's images."""

from ..integration.conftest import baked_image, base_image, lxd, unique  # noqa: F401  (fixtures)
