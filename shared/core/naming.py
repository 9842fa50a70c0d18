"""Deterministic APIM entity ids for Services.

Pure. A default backend id is `<cluster>-<namespace>-<service>` sanitised to APIM's id rules, followed by
a short hash of the exact triple. The hash is always there because sanitising alone can collide:
cluster "a-b" + namespace "c" and cluster "a" + namespace "b-c" read the same once joined by dashes.
Long ids are truncated before the hash, so every id stays within APIM's 80 characters.
"""

from __future__ import annotations

import hashlib
import re

from shared.core.model import BackendId, ServiceRef

MAX_ID_LENGTH = 80
HASH_LENGTH = 6
_VALID_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$")
_NOT_ALLOWED = re.compile(r"[^a-z0-9-]+")


def backend_id_for(ref: ServiceRef) -> BackendId:
    digest = hashlib.sha256(ref.qualified.encode()).hexdigest()[:HASH_LENGTH]
    readable = _NOT_ALLOWED.sub("-", f"{ref.cluster}-{ref.namespace}-{ref.name}".lower())
    readable = re.sub(r"-{2,}", "-", readable).strip("-")
    readable = readable[: MAX_ID_LENGTH - HASH_LENGTH - 1].rstrip("-")
    return BackendId(f"{readable}-{digest}" if readable else digest)


def id_problem(candidate: str) -> str | None:
    """Why APIM would reject this id, or None.

    Deliberately stricter than APIM (which forbids only a few characters): ids made only of letters,
    digits, '.', '_' and '-' are safe in ARM paths, policies and $filter expressions.
    """
    if not candidate:
        return "must not be empty"
    if len(candidate) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if not _VALID_ID.match(candidate):
        return "only letters, digits, '.', '_' and '-' are allowed, starting and ending with a letter or digit"
    return None
