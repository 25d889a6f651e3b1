"""A lab's own certificate authority and one certificate per host: how libvirt and QEMU on two lab hosts
know each other before a guest moves between them (mutual TLS; docs/security.md).

The CA's key stays in the lab's state directory on this machine (mode 0600) and never enters a host; each
host gets its own key and a certificate valid for its name and the addresses its libvirt listens on, for
both roles (a host is the server of one migration and the client of the next). `down` removes all of it
with the lab's state directory. Pure but for `authority`, which keeps the CA in the state directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from . import state

CA_KEY, CA_CERT = "ca-key.pem", "ca-cert.pem"
VALID_DAYS = 3650
ORGANIZATION = "lxdkvm lab {lab}"


@dataclass(frozen=True)
class HostCredentials:
    ca: bytes  # the lab CA's certificate (PEM)
    cert: bytes  # the host's certificate (PEM), server and client
    key: bytes  # the host's private key (PEM)


def _name(lab: str, common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION.format(lab=lab)),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def new_authority(lab: str) -> tuple[bytes, bytes]:
    """(key, certificate) of a new CA for LAB, in PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key, now = _key(), datetime.datetime.now(datetime.timezone.utc)
    name = _name(lab, f"lxdkvm lab {lab} CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _pem_key(key), _pem_cert(cert)


def issue(lab: str, ca_key_pem: bytes, ca_cert_pem: bytes, host: str,
          addresses: list[ipaddress.IPv4Address]) -> HostCredentials:
    """A key and certificate for HOST of LAB, valid as TLS server and client for its name and ADDRESSES."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key, now = _key(), datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(host), *(x509.IPAddress(a) for a in addresses)]
    cert = (x509.CertificateBuilder().subject_name(_name(lab, host)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return HostCredentials(ca_cert_pem, _pem_cert(cert), _pem_key(key))


def authority(lab: str) -> tuple[bytes, bytes]:
    """LAB's CA (key, certificate), made once and kept in its state directory until `down`."""
    directory = state.state_dir(lab)
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if key_path.is_file() and cert_path.is_file():
        return key_path.read_bytes(), cert_path.read_bytes()
    key, cert = new_authority(lab)
    _write(key_path, key, 0o600)
    _write(cert_path, cert, 0o644)
    return key, cert


def host_credentials(lab: str, host: str, addresses: list[str]) -> HostCredentials:
    """HOST's key and certificate, issued once by LAB's CA and kept in the lab's state directory, so every
    `up` pushes the same files (and a recreated host gets them back); issued anew when the addresses it
    must be valid for changed."""
    from cryptography import x509

    ca_key, ca_cert = authority(lab)
    folder = state.state_dir(lab) / "hosts"
    folder.mkdir(mode=0o700, exist_ok=True)
    key_path, cert_path = folder / f"{host}-key.pem", folder / f"{host}-cert.pem"
    wanted = sorted(ipaddress.IPv4Address(a) for a in addresses)
    if key_path.is_file() and cert_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if sorted(names.get_values_for_type(x509.IPAddress)) == wanted and cert.issuer == \
                x509.load_pem_x509_certificate(ca_cert).subject:
            return HostCredentials(ca_cert, cert_path.read_bytes(), key_path.read_bytes())
    made = issue(lab, ca_key, ca_cert, host, wanted)
    _write(key_path, made.key, 0o600)
    _write(cert_path, made.cert, 0o644)
    return made


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def allowed_dn(lab: str) -> str:
    """libvirtd's `tls_allowed_dn_list` entry: any host certificate of LAB (GnuTLS's DN order)."""
    return f"O={ORGANIZATION.format(lab=lab)},CN=*"
