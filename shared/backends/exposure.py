"""Which Services this deployment exposes, in which mode, and the Ingresses that front them.

Pure. The allow-list writers and the rotation's trust step both act only on what this says is managed.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.backends.discovery import managed_mode
from shared.core.annotations import AnnotationContext
from shared.core.model import IngressView, Mode, ServiceView


def managed_modes(services: Sequence[ServiceView], ctx: AnnotationContext) -> dict[tuple[str, str], Mode]:
    found = {}
    for service in services:
        mode = managed_mode(service, ctx)
        if mode is not None:
            found[(service.namespace, service.name)] = mode
    return found


def managed_ingresses(
    services: Sequence[ServiceView], ingresses: Sequence[IngressView], ctx: AnnotationContext
) -> list[IngressView]:
    """The Ingresses this deployment manages: those routing to an ingress-mode Service it exposes."""
    modes = managed_modes(services, ctx)
    return [
        ingress
        for ingress in ingresses
        if any(modes.get((ingress.namespace, name)) is Mode.INGRESS for name in ingress.service_names)
    ]
