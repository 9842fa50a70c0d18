"""CIDR lists as allow-lists hold them: parsed strictly, canonical, never world-open.

Pure. Canonical means each network once, sorted, host bits refused (not rounded), so an unchanged set never
causes a write. A /0 is never part of a canonical list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressSource(StrEnum):
    AUTO = "auto"
    PUBLIC = "public"
    PRIVATE = "private"
    BOTH = "both"


@dataclass(frozen=True)
class AllowListPolicy:
    source: AddressSource = AddressSource.AUTO
    private_prefixes: tuple[str, ...] = ()
    extra_cidrs: tuple[str, ...] = ()


def network(text: str) -> Network:
    """A CIDR or a bare address (as /32 or /128); raises ValueError. Host bits are an error, not rounded."""
    return ipaddress.ip_network(text.strip(), strict=True)


def canonical(networks: Iterable[Network]) -> tuple[str, ...]:
    unique = {n for n in networks if n.prefixlen > 0}
    return tuple(str(n) for n in sorted(unique, key=lambda n: (n.version, n.network_address, n.prefixlen)))


def parse_list(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Read an allow-list as it is held (comma-separated text or a list); None when any entry is not a CIDR."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return canonical(network(item) for item in items if item.strip())
    except ValueError:
        return None
