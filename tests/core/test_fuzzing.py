"""Every surface where untrusted input is parsed, fuzzed: it yields a value or a named problem, never an
exception. Events, settings, OpenAPI documents, policy texts and request bodies."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.apis import claims as apis
from shared.core.errors import InvalidSettings
from shared.core.scope import BadRequest, ResyncRequest, parse_flags, parse_resync_request
from shared.core.settings import load_settings
from shared.events import routing

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
ACTIONS = (
    routing.ReconcileScope,
    routing.RefreshAllowLists,
    routing.RecheckApi,
    routing.RecheckBackend,
    routing.Acknowledge,
    routing.Malformed,
)
APIM_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim"
CONTEXT = routing.EventContext(
    cluster="aks-sandbox", apim_service_id=APIM_ID, trusted_sources=frozenset({"/aks-apim-sync/aks-sandbox"})
)

strange_text = st.text(max_size=80) | st.sampled_from(["", " ", "\x00", "²", "/" * 300, "1e309", "nan", "-0", "{}", "[]"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | strange_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(strange_text, children, max_size=5),
    max_leaves=30,
)


def samples() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.json")):
        loaded = json.loads(path.read_text())
        found += loaded if isinstance(loaded, list) else [loaded]
    return found


EVENT_FIELDS = ["id", "type", "eventType", "source", "topic", "subject", "data", "specversion", "dataVersion", "eventTime"]


@settings(max_examples=400, deadline=None)
@given(sample=st.sampled_from(samples()), field=st.sampled_from(EVENT_FIELDS), value=json_values)
def test_any_event_with_any_field_replaced_is_routed_or_named_malformed(sample: dict[str, Any], field: str, value: Any) -> None:
    assert isinstance(routing.route({**sample, field: value}, CONTEXT), ACTIONS)


@settings(max_examples=200, deadline=None)
@given(raw=json_values)
def test_any_json_value_as_an_event_is_routed_or_named_malformed(raw: Any) -> None:
    assert isinstance(routing.route(raw, CONTEXT), ACTIONS)


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(max_size=200)
    | st.from_regex(r"clusters/aks-sandbox/namespaces/[^/]{0,70}/services/[^/]{0,70}", fullmatch=True),
    data=json_values,
)
def test_a_watcher_event_with_any_subject_and_data_is_routed_or_named_malformed(subject: str, data: Any) -> None:
    raw = {
        "specversion": "1.0",
        "id": "1",
        "source": "/aks-apim-sync/aks-sandbox",
        "type": "io.apim-sync.service.changed",
        "subject": subject,
        "data": data,
    }
    action = routing.route(raw, CONTEXT)
    assert isinstance(action, ACTIONS)
    if isinstance(action, routing.ReconcileScope) and action.scope.namespace is not None:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", action.scope.namespace), "only a valid namespace is a scope"


SETTINGS = [
    "APPLY_CONCURRENCY", "MAX_ATTEMPTS", "MAX_RETRY_WAIT_SECONDS", "MAX_DELETES_PER_RUN", "MAX_DELETE_FRACTION",
    "TRUST_PROPAGATION_SECONDS", "CERT_GRACE_SECONDS", "CERT_VALIDITY_DAYS", "CA_VALIDITY_DAYS", "CERT_RENEW_FRACTION",
    "ALLOWLIST_EXTRA_CIDRS", "ALLOWLIST_PRIVATE_PREFIXES", "ALLOWLIST_ADDRESSES", "NAMESPACES", "ANNOTATION_PREFIX",
    "CLUSTER_NAME", "OWNER_ID", "DEFAULT_MODE", "SYNC_POLICY", "PUBLIC_AUTH_MODE", "PUBLIC_AUTH_AUDIENCE",
    "ARM_ENDPOINT", "AKS_API_SERVER", "EVENT_SOURCES", "CLIENT_CERTIFICATE_SOURCE", "CERT_KEY_TYPE", "APIS_ENABLED",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(SETTINGS), value=st.text(max_size=60) | st.from_regex(r"-?[0-9.e+]{1,12}|nan|inf|-inf", fullmatch=True)
)
def test_any_setting_value_loads_or_is_named_never_a_traceback(name: str, value: str) -> None:
    base = {
        "APIM_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "APIM_RESOURCE_GROUP": "rg",
        "APIM_SERVICE_NAME": "apim",
        "CLUSTER_NAME": "aks",
        "AKS_API_SERVER": "https://aks.example:443",
        "AKS_CA_CERT": "",
    }
    try:
        load_settings({**base, name: value})
    except InvalidSettings as raised:
        assert raised.problems, "a refusal names its settings"
        assert all(problem_name for problem_name, _ in raised.problems)


openapi_documents = st.fixed_dictionaries(
    {"paths": st.dictionaries(strange_text, st.dictionaries(strange_text | st.sampled_from(["get", "post", "PUT"]), json_values))}
) | json_values.map(lambda value: {"paths": value})


@settings(max_examples=300, deadline=None)
@given(document=openapi_documents)
def test_any_openapi_document_gives_valid_operations_or_a_reason(document: dict[str, Any]) -> None:
    for as_text in (json.dumps(document), json.dumps(document, indent=1).replace("{", "{ ")):
        try:
            operations = apis.operations_from_text(as_text)
        except ValueError as reason:
            assert str(reason)
            continue
        for method, template in operations:
            apis.parse_operations(f"{method} {template}")  # what the annotation accepts, an OpenAPI path does too


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=400)
    | st.builds(
        "".join,
        st.lists(
            st.sampled_from(
                [
                    "<",
                    ">",
                    "@(",
                    ")",
                    '"',
                    "<!--",
                    "-->",
                    "aks-apim-sync:begin",
                    "aks-apim-sync:end",
                    "<inbound>",
                    "<base />",
                    "<policies>",
                    "x",
                ]
            ),
            max_size=60,
        ),
    )
)
def test_any_policy_text_takes_and_gives_up_the_managed_block(text: str) -> None:
    routing = apis.Routing.of(apis.Route("b1"), {"get-a": apis.Route("b2", "api://x")})
    spliced = apis.with_routing(text, routing)
    assert apis.policy_routing(spliced) == routing
    apis.policy_routing(text)  # any text reads as some routing, never an exception


@settings(max_examples=300, deadline=None)
@given(
    body=json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200),
    params=st.dictionaries(strange_text, strange_text, max_size=4),
)
def test_any_request_body_and_query_is_a_request_or_a_bad_request(body: bytes, params: dict[str, str]) -> None:
    assert isinstance(parse_resync_request(params, body, cluster="aks-sandbox"), ResyncRequest | BadRequest)
    flags = parse_flags(params, body, ("dryRun", "force", "forceCa"))
    assert isinstance(flags, dict | BadRequest)
