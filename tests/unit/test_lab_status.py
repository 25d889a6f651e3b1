"""Reading a lab's status: a guest's DHCP lease (a bare address in the daemon's lease file) is shown the
way guests report their own addresses, with its network's prefix, so the readback check keeps it."""

from lxdkvm import readback
from lxdkvm.lab import status


def test_a_lease_gets_its_networks_prefix_and_passes_the_readback_check():
    shown = status._with_prefix("10.216.10.175", "10.216.10.0/24")
    assert shown == "10.216.10.175/24" and readback.interface(shown) == shown
    assert readback.interface("10.216.10.175") is None  # what was left out before


def test_an_address_with_a_prefix_is_kept_as_it_is():
    assert status._with_prefix("10.216.20.51/24", "10.216.20.0/24") == "10.216.20.51/24"
