"""Run in a lab host by `lxdkvm snapshot`, after a guest's memory was saved: `python3 - GUEST MAC=IPV4...`.

A NIC whose address came from DHCP has a traffic filter that learnt the address from the DHCP answer
(CTRL_IP_LEARNING=dhcp). A guest resumed from saved memory asks for no new lease, so a filter that has to
learn again would drop all its traffic until the lease is renewed (half an hour later). So each such NIC's
filter gets the address the NIC holds (MAC=IPV4, from the DHCP server's own leases) as its IP parameter in
the saved state; the guest's definition, and so its next boot, keeps learning.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

guest, held = sys.argv[1], dict(pair.split("=", 1) for pair in sys.argv[2:])
saved = subprocess.run(["virsh", "managedsave-dumpxml", "--security-info", guest], capture_output=True,
                       text=True, check=True).stdout
root = ET.fromstring(saved)
pinned = []
for nic in root.iter("interface"):
    mac, ref = nic.find("mac"), nic.find("filterref")
    address = held.get((mac.get("address") or "").lower()) if mac is not None else None
    if ref is None or address is None:
        continue
    for parameter in ref.findall("parameter"):
        if parameter.get("name") in ("CTRL_IP_LEARNING", "IP"):
            ref.remove(parameter)
    ET.SubElement(ref, "parameter", name="IP", value=address)
    pinned.append(address)
if pinned:
    path = f"/run/lxdkvm-pin-{guest}.xml"
    with open(path, "w") as out:
        out.write(ET.tostring(root, encoding="unicode"))
    try:
        subprocess.run(["virsh", "-q", "managedsave-define", guest, path, "--running"], check=True)
    finally:
        os.unlink(path)
print(" ".join(pinned))
