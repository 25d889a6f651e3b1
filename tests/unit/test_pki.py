"""A lab's CA and its hosts' certificates (lab/pki.py), the files a host gets for migrations over TLS
(guests/hostprep.py) and the guest filter on every guest NIC (guests/domain.py). That libvirt and QEMU
accept them, and refuse others, is tests/security/test_hostile_guest.py's business."""

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID

from lxdkvm.guests import domain, hostprep
from lxdkvm.lab import pki
from lxdkvm.labfile import read


def test_a_host_certificate_is_the_labs_valid_for_its_name_and_addresses_in_both_roles():
    key, cert = pki.new_authority("demo")
    made = pki.issue("demo", key, cert, "kvm-1", [ipaddress.IPv4Address("10.200.20.11")])
    host = x509.load_pem_x509_certificate(made.cert)
    ca = x509.load_pem_x509_certificate(cert)
    assert host.issuer == ca.subject and made.ca == cert
    names = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kvm-1"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("10.200.20.11")]
    usage = host.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.public_key().verify(host.signature, host.tbs_certificate_bytes, padding.PKCS1v15(),
                           host.signature_hash_algorithm)  # raises unless the lab's CA signed it


def test_credentials_are_kept_and_reissued_only_when_the_addresses_change(tmp_path, monkeypatch):
    monkeypatch.setenv("LXDKVM_STATE_DIR", str(tmp_path))
    first = pki.host_credentials("demo", "kvm-1", ["10.200.20.11"])
    assert pki.host_credentials("demo", "kvm-1", ["10.200.20.11"]) == first
    moved = pki.host_credentials("demo", "kvm-1", ["10.200.20.21"])
    assert moved.cert != first.cert and moved.ca == first.ca
    key = tmp_path / "labs" / "demo" / pki.CA_KEY
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "labs/demo/hosts/kvm-1-key.pem").stat().st_mode & 0o077 == 0


def test_a_host_with_isolated_addresses_gets_tls_files_and_a_socket_that_needs_its_firewall():
    lab, problems, _ = read.load(None)
    assert not problems
    host = lab.host("kvm-1")
    creds = pki.HostCredentials(b"CA", b"CERT", b"KEY")
    files = hostprep.listener_files(lab, host, creds)
    dropin = files[hostprep.LISTENER_DROPIN]
    assert "Requires=lxdkvm-migration-firewall.service" in dropin
    assert "ListenStream=10.200.20.11:16514" in dropin and "16509" not in dropin
    assert all(files[path] == "KEY" for path in hostprep.PKI["key"])
    assert all(files[path] == "CA" for path in hostprep.PKI["ca"])
    firewall = files[hostprep.FIREWALL_SCRIPT]
    assert "--dports 16514,49152:49215" in firewall and "-s 10.200.20.12 -j RETURN" in firewall
    assert hostprep.FILTER_FILE in files and '<filter name="lxdkvm-guest" chain="root">' in files[hostprep.FILTER_FILE]
    assert set(hostprep.listener_files(lab, host)) == {hostprep.FILTER_FILE}  # no credentials: no listener


def test_every_guest_nic_names_the_filter_with_its_address_or_learns_it_from_its_dhcp_server():
    nics = (domain.GuestNic("br-data", "52:54:00:12:34:56", "10.0.0.5/24"),
            domain.GuestNic("br-mgmt", "52:54:00:12:34:57", None, dhcp_server="10.0.1.1"))
    xml = domain.domain_xml(domain.GuestDomain(name="vm", kernel="/k", initrd="/i", memory_mib=128, vcpus=1,
                                               accel="tcg", nics=nics))
    assert xml.count(f'<filterref filter="{domain.GUEST_FILTER}">') == 2
    assert '<parameter name="IP" value="10.0.0.5"/>' in xml
    assert '<parameter name="CTRL_IP_LEARNING" value="dhcp"/>' in xml
    assert '<parameter name="DHCPSERVER" value="10.0.1.1"/>' in xml


def test_the_guest_filter_is_an_allow_list_in_one_chain():
    """The filter's rules as libvirt orders them (by priority): the drop of frames from another MAC and of
    a DHCP server's answers come before anything a guest may send; what a guest may send names its own
    MAC or address (or is a DHCP client's request before it has one); everything else, both ways, is
    dropped last. One chain, no filter references: each chain costs libvirt commands at every guest
    start and migration."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring((hostprep.data_dir("libvirt") / "lxdkvm-guest-filter.xml").read_text())
    assert root.get("name") == domain.GUEST_FILTER and root.get("chain") == "root"
    assert root.find("filterref") is None
    rules = sorted(root.findall("rule"), key=lambda r: int(r.get("priority")))
    out = [r for r in rules if r.get("direction") in ("out", "inout")]
    first, second = out[0], out[1]
    assert first.get("action") == "drop" and first.find("mac").attrib == {"match": "no", "srcmacaddr": "$MAC"}
    assert second.get("action") == "drop" and second.find("ip").get("srcportstart") == "67"
    for rule in (r for r in out if r.get("action") == "accept"):
        (match,) = list(rule)
        own = {match.get(k) for k in ("srcmacaddr", "srcipaddr", "arpsrcmacaddr", "arpsrcipaddr")} - {None}
        dhcp_client = match.attrib.get("srcipaddr") == "0.0.0.0" and match.get("dstportstart") == "67"
        assert dhcp_client or own & {"$MAC", "$IP"}, ET.tostring(rule)
        if match.tag == "arp":
            assert {match.get("arpsrcmacaddr"), match.get("arpsrcipaddr")} == {"$MAC", "$IP"}
    last = rules[-1]
    assert (last.get("action"), last.get("direction"), len(last)) == ("drop", "inout", 0)
