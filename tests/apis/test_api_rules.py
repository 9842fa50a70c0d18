"""Annotations -> APIs: parsing, grouping, conflicts and the managed policy block. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.apis.claims import (
    ApiClaim,
    ApiProblem,
    claim_for,
    collect_apis,
    operations_from_openapi,
    parse_operations,
    policy_backend,
    with_managed_block,
)
from shared.core.model import BackendId, ServiceRef, ServiceView

PREFIX = "apim-sync.io"


def claim(
    name: str, operations: tuple[tuple[str, str], ...] | None = None, *, path: str = "orders", namespace: str = "shop"
) -> ApiClaim:
    return ApiClaim(
        source=ServiceRef("c", namespace, name),
        api_id="orders",
        path=path,
        display_name="Orders",
        subscription_required=True,
        products=(),
        backend_id=BackendId(f"b-{name}"),
        operations=operations,
    )


def test_operations_annotation_is_parsed_into_method_and_template() -> None:
    assert parse_operations("GET /orders/{id}, post /orders") == [("GET", "/orders/{id}"), ("POST", "/orders")]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("FETCH /x", "is not '<METHOD> /path'"),
        ("GET orders", "is not"),
        ("GET /a/{id", "URL template"),
        (" , ", "lists no operation"),
    ],
)
def test_bad_operations_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_operations(text)


def test_claim_names_the_bad_annotation() -> None:
    service = ServiceView("shop", "orders", {f"{PREFIX}/api-id": "orders", f"{PREFIX}/subscription-required": "maybe"})
    problem = claim_for(service, BackendId("b"), "c", PREFIX)
    assert problem == ApiProblem(
        "shop/orders", f"{PREFIX}/subscription-required", "InvalidAnnotation", "'maybe' is not true or false"
    )


def test_one_service_is_the_default_backend_of_the_whole_api() -> None:
    desired = collect_apis([claim("orders")])
    api = desired.apis["orders"]
    assert api.default_backend == "b-orders"
    assert sorted(o.display_name for o in api.operations) == ["DELETE /*", "GET /*", "PATCH /*", "POST /*", "PUT /*"]
    assert all(o.backend_id is None for o in api.operations)


def test_services_naming_operations_are_aggregated_each_routed_to_its_backend() -> None:
    desired = collect_apis([claim("read", (("GET", "/orders/{id}"),)), claim("write", (("POST", "/orders"),))])
    routes = {o.display_name: o.backend_id for o in desired.apis["orders"].operations}
    assert routes == {"GET /orders/{id}": "b-read", "POST /orders": "b-write"}
    assert desired.apis["orders"].default_backend is None


def test_an_operation_claimed_twice_is_held_and_reported_the_rest_goes_on() -> None:
    desired = collect_apis([claim("a", (("GET", "/x"), ("POST", "/x"))), claim("b", (("GET", "/x"),))])
    assert [o.display_name for o in desired.apis["orders"].operations] == ["POST /x"]
    assert desired.apis["orders"].held_operations == {"get-x"}
    (problem,) = desired.problems
    assert problem.reason == "OperationConflict" and "shop/a" in problem.message and "shop/b" in problem.message


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ([claim("a", path="orders"), claim("b", (("GET", "/x"),), path="sales")], "api-path"),
        ([claim("a"), claim("b")], "operations"),
        ([claim("a", (("GET", "/x"),)), claim("b", (("POST", "/x"),), namespace="billing")], "api-id"),
    ],
)
def test_conflicting_claims_hold_the_whole_api(claims: list[ApiClaim], field: str) -> None:
    desired = collect_apis(claims)
    assert desired.apis == {} and desired.held == {"orders"} and desired.problems[0].field == field


def test_managed_block_is_added_after_base_and_keeps_the_operators_lines() -> None:
    operator = (
        '<policies><inbound><base /><rate-limit calls="10" renewal-period="60" /></inbound>'
        "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
    )
    routed = with_managed_block(operator, "b1")
    assert policy_backend(routed) == "b1" and '<rate-limit calls="10" renewal-period="60" />' in routed
    rerouted = with_managed_block(routed, "b2")
    assert policy_backend(rerouted) == "b2" and rerouted.count("set-backend-service") == 1
    assert '<rate-limit calls="10" renewal-period="60" />' in with_managed_block(rerouted, None)
    ET.fromstring(rerouted)  # noqa: S314 - our own generated text


def test_openapi_document_paths_become_operations() -> None:
    document = {"openapi": "3.0.1", "paths": {"/orders": {"get": {}, "post": {}}, "/orders/{id}": {"get": {}, "parameters": []}}}
    assert operations_from_openapi(document) == [("GET", "/orders"), ("GET", "/orders/{id}"), ("POST", "/orders")]


@given(
    operator_lines=st.lists(
        st.sampled_from(
            [
                '<rate-limit calls="10" renewal-period="60" />',
                '<set-variable name="t" value="@(context.Variables.GetValueOrDefault<string>("t"))" />',
                '<set-header name="x" exists-action="override"><value>@{ return "<&>"; }</value></set-header>',
                "\r\n\t\t",
                "<!-- an operator's comment -->",
            ]
        ),
        max_size=5,
    ),
    backend_id=st.sampled_from(["b1", "b-2", "orders.v3"]),
)
def test_splicing_the_managed_block_keeps_every_other_byte_and_is_idempotent(operator_lines: list[str], backend_id: str) -> None:
    operator = "<policies>\r\n\t<inbound>\r\n\t\t<base />" + "".join(operator_lines) + "\r\n\t</inbound>\r\n</policies>"
    routed = with_managed_block(operator, backend_id)
    assert policy_backend(routed) == backend_id
    assert with_managed_block(routed, backend_id) == routed
    assert with_managed_block(routed, None) == operator


_segment = st.sampled_from(["shop", "orders", "v1", "v2", "a"])
_path = st.lists(_segment, max_size=4).map("/".join)


@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=3), _path, max_size=12), _path)
def test_the_path_index_finds_exactly_the_apis_whose_path_overlaps(paths: dict[str, str], path: str) -> None:
    from shared.apis.plan import PathIndex
    from shared.core.tenancy import paths_overlap

    assert PathIndex(paths).overlapping(path) == sorted(a for a, p in paths.items() if paths_overlap(path, p))
