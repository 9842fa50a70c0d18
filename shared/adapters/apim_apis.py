"""APIM's APIs, operations, policies, tags and product links, over the client that shared.adapters.apim builds.

Bodies are sent as raw JSON, so what is written is what the plan shows. It does not import
azure-mgmt-apimanagement itself: the client is handed in, so that SDK has one importer (azure-mgmt-core's
polling is imported here).
"""

from __future__ import annotations

import io
import json
from typing import Any

from azure.core.polling.base_polling import LocationPolling, StatusCheckPolling
from azure.mgmt.core.polling.arm_polling import ARMPolling, AzureAsyncOperationPolling

from shared.adapters.azure_errors import translate_arm as translate
from shared.apis import claims as apis
from shared.core import errors
from shared.runtime.ports import KnownOfApi


def _body(properties: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(json.dumps({"properties": properties}).encode())


class ApimApis:
    def __init__(self, client: Any, where: tuple[str, str]) -> None:
        self._client = client
        self._where = where

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        with errors.translating(translate, what):
            return call(*self._where, *args, **kwargs)

    def _absent_is_none(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._call(what, call, *args, **kwargs)
        except errors.NotFound:
            return None

    def all_apis(self, odata_filter: str | None = None) -> dict[str, tuple[str, str]]:
        """api id -> (path, description) of every API in APIM (or those the OData $filter keeps): the paths taken,
        and the owner marks."""
        with errors.translating(translate, "list APIs"):
            listed = self._client.api.list_by_service(*self._where, filter=odata_filter)
            return {str(a.name): (str(a.path or ""), str(a.description or "")) for a in listed}

    def all_api_properties(self, odata_filter: str | None = None) -> dict[str, dict[str, Any]]:
        """api id -> the API's properties as the listing holds them (no ETag: an update reads its API first)."""

        def properties(items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
            return [(str(a.name), dict(a.serialize(keep_readonly=True).get("properties") or {})) for a in items]

        with errors.translating(translate, "list APIs"):
            return dict(self._client.api.list_by_service(*self._where, filter=odata_filter, cls=properties))

    def api_ids_in(self, product_id: str) -> frozenset[str]:
        """The APIs in the product, listed (pages of 100); a product that does not exist holds none."""
        try:
            with errors.translating(translate, f"list APIs of product {product_id}"):
                return frozenset(str(a.name) for a in self._client.product_api.list_by_product(*self._where, product_id))
        except errors.NotFound:
            return frozenset()

    def is_tagged(self, api_id: str, tag_id: str) -> bool:
        found = self._absent_is_none(f"tag {tag_id} of API {api_id}", self._client.tag.get_by_api, api_id, tag_id)
        return found is not None

    def tagged_api_ids(self, tag_name: str) -> set[str]:
        with errors.translating(translate, "list APIs by tag"):
            rows = self._client.api.list_by_tags(*self._where, filter=f"tag/name eq '{tag_name}'")
            return {str(row.api.id).rsplit("/", 1)[-1] for row in rows if row.api is not None and row.api.id}

    def _get(self, api_id: str) -> tuple[dict[str, Any], str] | None:
        """The API's properties as ARM returns them, and its ETag; None when there is no such API."""

        def with_etag(pipeline_response: Any, _model: Any, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
            return pipeline_response.http_response.json().get("properties", {}), headers.get("ETag", "")

        found: tuple[dict[str, Any], str] | None = self._absent_is_none(
            f"API {api_id}", self._client.api.get, api_id, cls=with_etag
        )
        return found

    def api(self, api_id: str) -> tuple[dict[str, Any], str] | None:
        """The API's properties and ETag; None when there is no such API."""
        return self._get(api_id)

    def policy(self, api_id: str, operation_id: str | None = None) -> tuple[str, str] | None:
        """The policy of the API (or of one of its operations) as rawxml, and its ETag; None when there is none."""

        def with_etag(pipeline_response: Any, _model: Any, headers: dict[str, str]) -> tuple[str, str]:
            value = pipeline_response.http_response.json().get("properties", {}).get("value") or ""
            return str(value), headers.get("ETag", "")

        if operation_id is None:
            found = self._absent_is_none(
                f"API {api_id} policy", self._client.api_policy.get, api_id, "policy", format="rawxml", cls=with_etag
            )
        else:
            found = self._absent_is_none(
                f"operation {operation_id} policy",
                self._client.api_operation_policy.get,
                api_id,
                operation_id,
                "policy",
                format="rawxml",
                cls=with_etag,
            )
        return found  # type: ignore[no-any-return]

    def description(self, api_id: str) -> str | None:
        """One GET: the API's description (where the owner mark is), or None when the API does not exist."""
        found = self._get(api_id)
        return str(found[0].get("description") or "") if found is not None else None

    def observe(self, api_id: str, known: KnownOfApi) -> apis.ObservedApi | None:
        """See KnownOfApi for what each thing known spares."""
        listed, members, tagged, products = known.listed, known.members, known.tagged, known.products
        if listed is not None:
            raw, etag = dict(listed), ""
        else:
            found = self._get(api_id)
            if found is None:
                return None
            raw, etag = found
        policy, policy_etag = self.policy(api_id) or (None, None)
        operations: dict[str, apis.ObservedOperation] = {}
        with errors.translating(translate, f"list operations of API {api_id}"):
            listed_operations = list(self._client.api_operation.list_by_api(*self._where, api_id))
        for operation in listed_operations:
            # The API's policy routes every operation: an operation's own policy is read only while it may
            # still hold a block from before (once), so a run's cost does not grow per operation.
            description = str(operation.description or "")
            older = apis.may_hold_a_block(description)
            op_policy, op_etag = (self.policy(api_id, str(operation.name)) if older else None) or (None, None)
            operations[str(operation.name)] = apis.ObservedOperation(
                id=str(operation.name),
                method=str(operation.method or ""),
                url_template=str(operation.url_template or ""),
                description=description,
                policy=op_policy,
                policy_etag=op_etag,
            )
        members = members or {}
        member_of = frozenset(
            p
            for p in {*products, *apis.marked_products(str(raw.get("description") or ""))}
            if (api_id in members[p] if p in members else self._member(p, api_id))
        )
        return apis.ObservedApi(
            id=api_id,
            path=str(raw.get("path") or ""),
            display_name=str(raw.get("displayName") or ""),
            subscription_required=bool(raw.get("subscriptionRequired", True)),
            description=str(raw.get("description") or ""),
            tagged=tagged,
            policy=policy,
            policy_etag=policy_etag,
            operations=operations,
            products=member_of,
            raw_properties=raw,
            etag=etag or None,
        )

    def _member(self, product_id: str, api_id: str) -> bool:
        """Whether the API is in the product; a product that does not exist holds nothing."""
        found = self._absent_is_none(f"product {product_id}", self._client.product_api.check_entity_exists, product_id, api_id)
        return bool(found)

    def remove_from_product(self, product_id: str, api_id: str) -> None:
        self._absent_is_none(f"product {product_id}", self._client.product_api.delete, product_id, api_id)

    def product_ids(self) -> frozenset[str]:
        with errors.translating(translate, "list products"):
            return frozenset(str(p.name) for p in self._client.product.list_by_service(*self._where))

    def put_api(self, api_id: str, properties: dict[str, Any], *, if_match: str | None = None) -> None:
        """If-Match on updates: a concurrent edit of the API is a 412 (retried on the next run), never lost.

        Polled only when APIM says the PUT runs on (Azure-AsyncOperation or Location). The SDK's default would
        also read the API back after every 201 without a provisioningState, which APIM's answer to a PUT without
        an import is: one needless ARM read per API created."""
        poller = self._call(
            f"API {api_id}",
            self._client.api.begin_create_or_update,
            api_id,
            _body(properties),
            if_match=if_match,
            polling=ARMPolling(0, lro_algorithms=[AzureAsyncOperationPolling(), LocationPolling(), StatusCheckPolling()]),
        )
        with errors.translating(translate, f"API {api_id}"):
            poller.result()

    def delete_api(self, api_id: str) -> None:
        poller = self._absent_is_none(
            f"API {api_id}", self._client.api.begin_delete, api_id, "*", delete_revisions=True, polling_interval=0
        )
        if poller is not None:
            with errors.translating(translate, f"API {api_id}"):
                poller.result()

    def tag_api(self, api_id: str, tag_id: str) -> None:
        self._call(f"tag {tag_id}", self._client.tag.create_or_update, tag_id, _body({"displayName": tag_id}))
        self._call(f"tag {tag_id} on API {api_id}", self._client.tag.assign_to_api, api_id, tag_id)

    def put_operation(self, api_id: str, operation_id: str, properties: dict[str, Any]) -> None:
        self._call(
            f"operation {operation_id}", self._client.api_operation.create_or_update, api_id, operation_id, _body(properties)
        )

    def delete_operation(self, api_id: str, operation_id: str) -> None:
        self._absent_is_none(f"operation {operation_id}", self._client.api_operation.delete, api_id, operation_id, "*")

    def put_api_policy(self, api_id: str, xml: str, *, if_match: str | None = None) -> None:
        body = _body({"format": "rawxml", "value": xml})
        call = self._client.api_policy.create_or_update
        self._call(f"API {api_id} policy", call, api_id, "policy", body, if_match=if_match)

    def put_operation_policy(self, api_id: str, operation_id: str, xml: str, *, if_match: str | None = None) -> None:
        body = _body({"format": "rawxml", "value": xml})
        what = f"operation {operation_id} policy"
        call = self._client.api_operation_policy.create_or_update
        self._call(what, call, api_id, operation_id, "policy", body, if_match=if_match)

    def create_product(self, product_id: str) -> None:
        properties = {"displayName": product_id, "subscriptionRequired": True, "state": "published"}
        self._call(f"product {product_id}", self._client.product.create_or_update, product_id, _body(properties))

    def add_to_product(self, product_id: str, api_id: str) -> None:
        self._call(f"product {product_id}", self._client.product_api.create_or_update, product_id, api_id)
