"""Ids, settings and scopes: small pure rules with sharp edges."""

from __future__ import annotations

import os

import pytest

from shared.core import ownership
from shared.core.errors import InvalidSettings
from shared.core.model import OwnerId, OwnerMark, ReconcilePolicy, ServiceRef
from shared.core.naming import backend_id_for, id_problem
from shared.core.scope import BadRequest, Scope, parse_resync_request
from shared.core.settings import load_settings

GOOD = {
    "APIM_SUBSCRIPTION_ID": "sub",
    "APIM_RESOURCE_GROUP": "rg",
    "APIM_SERVICE_NAME": "apim",
    "CLUSTER_NAME": "aks-prod",
    "OWNER_ID": "team-a",
    "SYNC_POLICY": "sync",
    "KUBECONFIG": os.devnull,
}


def test_default_backend_id_is_deterministic_readable_and_valid() -> None:
    backend_id = backend_id_for(ServiceRef("aks-prod", "payments", "orders"))
    assert backend_id == backend_id_for(ServiceRef("aks-prod", "payments", "orders"))
    assert backend_id.startswith("aks-prod-payments-orders-") and id_problem(backend_id) is None


def test_default_backend_ids_of_two_clusters_never_collide_even_when_names_join_alike() -> None:
    assert backend_id_for(ServiceRef("a-b", "c", "svc")) != backend_id_for(ServiceRef("a", "b-c", "svc"))
    assert backend_id_for(ServiceRef("prod", "ns", "svc")) != backend_id_for(ServiceRef("staging", "ns", "svc"))


def test_long_names_are_truncated_to_80_characters_with_a_hash_suffix() -> None:
    one = backend_id_for(ServiceRef("c" * 60, "n" * 63, "a" * 63))
    two = backend_id_for(ServiceRef("c" * 60, "n" * 63, "a" * 62 + "b"))
    assert len(one) <= 80 and len(two) <= 80 and one != two and id_problem(one) is None


def test_owner_mark_round_trips_and_foreign_text_is_not_a_mark() -> None:
    mark = OwnerMark(OwnerId("team-a"), ServiceRef("aks", "shop", "orders"), ReconcilePolicy.DETACH_ON_DELETE)
    assert ownership.parse_mark(ownership.render_mark(mark)) == mark
    assert ownership.parse_mark("Orders backend, owner=team-a") is None
    assert ownership.parse_mark(None) is None


def test_settings_load_with_safe_defaults() -> None:
    loaded = load_settings(GOOD)
    assert loaded.sync.max_deletes_per_run == 10 and loaded.sync.max_delete_fraction == 0.5
    assert loaded.apim.arm_endpoint == "https://management.azure.com"
    assert loaded.apim.arm_scope == "https://management.azure.com/.default"


def test_every_missing_or_invalid_setting_is_named_at_once_without_its_value() -> None:
    with pytest.raises(InvalidSettings) as caught:
        load_settings(
            {"SYNC_POLICY": "delete-everything", "MAX_DELETES_PER_RUN": "-1", "OWNER_ID": "x", "SANDBOX_TOKEN": "s3cret"}
        )
    named = {name for name, _ in caught.value.problems}
    assert named == {
        "APIM_SUBSCRIPTION_ID",
        "APIM_RESOURCE_GROUP",
        "APIM_SERVICE_NAME",
        "CLUSTER_NAME",
        "KUBECONFIG",
        "SYNC_POLICY",
        "MAX_DELETES_PER_RUN",
        "SANDBOX_TOKEN",
    }
    assert "s3cret" not in str(caught.value) and "delete-everything" not in str(caught.value)


def test_sync_policy_has_no_default_because_sync_deletes() -> None:
    with pytest.raises(InvalidSettings, match="SYNC_POLICY: missing"):
        load_settings({k: v for k, v in GOOD.items() if k != "SYNC_POLICY"})


def test_sandbox_token_is_refused_against_a_real_arm_endpoint() -> None:
    with pytest.raises(InvalidSettings, match="SANDBOX_TOKEN"):
        load_settings({**GOOD, "SANDBOX_TOKEN": "t", "ARM_ENDPOINT": "https://management.azure.com"})


def test_aks_connection_can_be_server_and_ca_instead_of_kubeconfig() -> None:
    loaded = load_settings(
        {**{k: v for k, v in GOOD.items() if k != "KUBECONFIG"}, "AKS_API_SERVER": "https://aks:443", "AKS_CA_CERT": os.devnull}
    )
    assert loaded.kube.kubeconfig is None and loaded.kube.api_server == "https://aks:443"


def test_resync_request_reads_scope_and_dry_run_from_query_or_body() -> None:
    parsed = parse_resync_request({"dryRun": "true"}, b'{"namespace": "shop", "service": "orders"}', cluster="aks")
    assert not isinstance(parsed, BadRequest)
    assert parsed.dry_run and parsed.scope == Scope("aks", "shop", "orders")


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [
        ({"dryRun": "maybe"}, b"", "dryRun"),
        ({"namespace": "Not_A_Name"}, b"", "namespace"),
        ({"service": "orders"}, b"", "service"),
        ({}, b"{not json", "body"),
        ({}, b"[1]", "body"),
        ({"colour": "blue"}, b"", "colour"),
    ],
)
def test_bad_resync_request_names_the_field(params: dict[str, str], body: bytes, field: str) -> None:
    parsed = parse_resync_request(params, body, cluster="aks")
    assert isinstance(parsed, BadRequest) and parsed.field == field


def test_every_setting_is_documented_in_the_readme_and_the_example() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent.parent
    names = set(re.findall(r'r\.(?:raw|required|parsed)\(\s*"([A-Z_]+)"', (root / "shared" / "core" / "settings.py").read_text()))
    readme = (root / "README.md").read_text()
    example = (root / "local.settings.json.example").read_text()
    assert names and not {n for n in names if f"`{n}`" not in readme and n not in readme}
    assert not {n for n in names if f'"{n}"' not in example}
