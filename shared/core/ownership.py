"""The owner mark: how a backend says which deployment created it, and for which Service.

Pure. APIM backends carry no tags, so the mark lives in the backend's `description`, which every GET and
list returns. Format (external-dns's TXT registry, in one line):

    managed-by=aks-apim-sync; owner=<owner-id>; source=<cluster>/<namespace>/<service>; policy=<policy>
"""

from __future__ import annotations

import sys

from shared.core.model import OwnerId, OwnerMark, ReconcilePolicy, ServiceRef

MANAGER = "aks-apim-sync"


def render_mark(mark: OwnerMark) -> str:
    return f"managed-by={MANAGER}; owner={mark.owner}; source={mark.source.qualified}; policy={mark.policy.value}"


def parse_mark(description: str | None) -> OwnerMark | None:
    """The mark in a description, or None when the text is not a well-formed mark of ours."""
    if not description:
        return None
    fields: dict[str, str] = {}
    for part in description.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    if fields.get("managed-by") != MANAGER or not fields.get("owner"):
        return None
    source = fields.get("source", "").split("/")
    if len(source) != 3 or not all(source):
        return None
    try:
        policy = ReconcilePolicy(fields.get("policy", ReconcilePolicy.MANAGE.value))
    except ValueError:
        return None
    # Thousands of marks name the same owner, cluster and namespace: one copy of each (freed when unused).
    cluster, namespace, name = source
    return OwnerMark(
        owner=OwnerId(sys.intern(fields["owner"])),
        source=ServiceRef(sys.intern(cluster), sys.intern(namespace), name),
        policy=policy,
    )


def is_owned(mark: OwnerMark | None, owner: OwnerId) -> bool:
    return mark is not None and mark.owner == owner
