"""Issue the CA and the client certificates that APIM presents to the ingress, with `cryptography`.

Pure apart from randomness (new keys, random serials): no I/O, no clock (`now` is a parameter). A new
private key at every issue, as cert-manager's rotationPolicy Always. Private keys and PFX passwords leave
this module only inside the material objects, whose repr never shows them.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.core.model import KeyKind as KeyKind

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertInfo:
    serial: str
    """Hex serial number; the first 8 characters name a CA in ids."""
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha1_thumbprint: str
    """Upper-case hex SHA-1, as APIM shows certificate thumbprints."""

    @property
    def short_id(self) -> str:
        return self.serial[:8]


@dataclass(frozen=True)
class Material:
    """A certificate and its private key, PEM. The key is kept out of repr."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def info(self) -> CertInfo:
        return cert_info(self.cert_pem)


def _new_key(kind: KeyKind) -> PrivateKey:
    if kind is KeyKind.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(kind.value.split("-")[1])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _serial() -> int:
    # 16 random bytes, top bit cleared so the DER integer stays positive (RFC 5280: at most 20 octets).
    return int.from_bytes(secrets.token_bytes(16), "big") >> 1


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def new_ca(common_name: str, *, now: datetime, days: int, kind: KeyKind) -> Material:
    key = _new_key(kind)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aks-apim-sync")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Material(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue_client(ca: Material, common_name: str, *, now: datetime, days: int, kind: KeyKind) -> Material:
    """A client certificate (clientAuth) from `ca`, never outliving it."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = _new_key(kind)
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aks-apim-sync"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Material(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def to_pfx(client: Material, name: str) -> tuple[bytes, str]:
    """PKCS#12 (what APIM's certificate entity takes) and the random password that protects it."""
    password = secrets.token_urlsafe(24)
    key = serialization.load_pem_private_key(client.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    cert = x509.load_pem_x509_certificate(client.cert_pem)
    data = pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None, serialization.BestAvailableEncryption(password.encode())
    )
    return data, password


def cert_info(pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificate(pem)
    return CertInfo(
        serial=f"{cert.serial_number:032x}",
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - APIM names certificates by SHA-1 thumbprint
    )


def split_pem_bundle(bundle: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" for part in (chunk + marker for chunk in bundle.split(marker)[:-1]) if part.strip()]


def certificates_in_secret(value: str, content_type: str | None) -> list[bytes]:
    """The certificates (PEM, the leaf first, then its chain) in the secret behind a Key Vault certificate:
    base64 PKCS#12 without a password (application/x-pkcs12) or PEM (application/x-pem-file). The private key
    is read past, never returned. ValueError when the secret holds no certificate."""
    if content_type == "application/x-pkcs12":
        _key, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
        found = [c.public_bytes(serialization.Encoding.PEM) for c in ([leaf] if leaf else []) + list(chain or [])]
    else:
        found = split_pem_bundle(value.encode())
    if not found:
        raise ValueError("the secret holds no certificate")
    return found


def issuer_in(leaf_pem: bytes, candidates: list[bytes]) -> bytes | None:
    """The certificate among `candidates` (or the leaf itself, if self-signed) whose subject issued the leaf."""
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    if leaf.issuer == leaf.subject:
        return leaf_pem
    return next((c for c in candidates if x509.load_pem_x509_certificate(c).subject == leaf.issuer), None)
