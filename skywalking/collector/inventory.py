"""The OAP 6.6.0 inventory as the collector models it: services, instances, endpoints, network addresses.

Creation is asynchronous like OAP's inventory stream (docs/protocol/sw6.md §5.1): ``get_or_create`` answers 0
for a new key and the id appears ``register_delay`` seconds after the first request. Id 1 is the
built-in ``User`` service / instance / endpoint (docs/protocol/sw6.md §5.1); issued ids start at 2. Not thread-safe:
the caller (``app.Collector``) holds one lock around every call.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

USER_ID = 1
USER_NAME = "User"
# The name OAP substitutes for an empty endpoint name.
DOMAIN_ENDPOINT = "{domain}"


@dataclass
class Entry:
    """One inventory row. ``id`` stays 0 until creation completes at ``ready_at`` (monotonic seconds)."""

    key: Hashable
    ready_at: float
    attrs: dict[str, Any] = field(default_factory=dict)
    id: int = 0


class Table:
    """One kind of inventory (services, instances, ...) with its own id sequence."""

    def __init__(self, kind: str, delay: float) -> None:
        self.kind = kind
        self.delay = delay
        self._by_key: dict[Hashable, Entry] = {}
        self._by_id: dict[int, Entry] = {}
        self._next_id = 2
        self._waiting: list[Entry] = []

    def get_or_create(self, key: Hashable, now: float, **attrs: Any) -> int:
        """The id of ``key``, or 0 while its creation (requested now if new) is still pending."""
        entry = self._by_key.get(key)
        if entry is None:
            entry = Entry(key=key, ready_at=now + self.delay, attrs=attrs)
            self._by_key[key] = entry
            self._waiting.append(entry)
            self.promote(now)
        return entry.id

    def lookup(self, key: Hashable) -> int:
        """The id of ``key`` if it exists (never creates); 0 otherwise."""
        entry = self._by_key.get(key)
        return entry.id if entry is not None else 0

    def get(self, entry_id: int) -> Entry | None:
        """The created entry with this id, or None."""
        return self._by_id.get(entry_id)

    def entry(self, key: Hashable) -> Entry | None:
        """The entry for ``key`` (created or still pending), or None."""
        return self._by_key.get(key)

    def add_builtin(self, key: Hashable, entry_id: int, **attrs: Any) -> None:
        entry = Entry(key=key, ready_at=0.0, attrs=attrs, id=entry_id)
        self._by_key[key] = entry
        self._by_id[entry_id] = entry

    def promote(self, now: float) -> None:
        """Finish every creation whose delay has passed, in request order."""
        if not self._waiting or self._waiting[0].ready_at > now:
            return
        still: list[Entry] = []
        for entry in self._waiting:
            if entry.ready_at <= now and self._by_key.get(entry.key) is entry:
                entry.id = self._next_id
                self._next_id += 1
                self._by_id[entry.id] = entry
            elif entry.ready_at > now:
                still.append(entry)
        self._waiting = still

    def clear(self) -> None:
        """Forget all rows. The id sequence keeps counting so stale ids never alias new rows."""
        self._by_key.clear()
        self._by_id.clear()
        self._waiting.clear()

    def created(self) -> Iterator[Entry]:
        return iter(sorted(self._by_id.values(), key=lambda e: e.id))

    def pending_count(self) -> int:
        return len(self._waiting)


def instance_name(service_name: str, properties: dict[str, str]) -> str:
    """OAP 6.6.0's instance name: ``<service>-pid:<process_no>@<host_name>``, parts only when present
    (docs/protocol/sw6.md §5.3)."""
    name = service_name
    if properties.get("process_no"):
        name += f"-pid:{properties['process_no']}"
    if properties.get("host_name"):
        name += f"@{properties['host_name']}"
    return name


def instance_properties(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Copy every key; repeated ``ipv4`` becomes ``ipv4s``, a JSON array string, always present
    (docs/protocol/sw6.md §5.3)."""
    props: dict[str, str] = {}
    ipv4s: list[str] = []
    for key, value in pairs:
        if key == "ipv4":
            ipv4s.append(value)
        else:
            props[key] = value
    props["ipv4s"] = json.dumps(ipv4s, separators=(",", ":"))
    return props


class Inventory:
    """Services by name, instances by (serviceId, uuid), endpoints by (serviceId, name), addresses by string."""

    def __init__(self, register_delay: float) -> None:
        self.services = Table("service", register_delay)
        self.instances = Table("instance", register_delay)
        self.endpoints = Table("endpoint", register_delay)
        self.addresses = Table("address", register_delay)
        # v3 (OAP 8+) instances, by (service name, instance name); no ids in that protocol.
        self.v3_instances: dict[tuple[str, str], dict[str, Any]] = {}
        self._add_builtins()

    def _add_builtins(self) -> None:
        self.services.add_builtin(USER_NAME, USER_ID, name=USER_NAME, lastHeartbeat=None, builtin=True)
        self.instances.add_builtin((USER_ID, USER_NAME), USER_ID, serviceId=USER_ID, uuid=USER_NAME,
                                   name=USER_NAME, properties={}, registerTime=None, lastHeartbeat=None,
                                   builtin=True)
        self.endpoints.add_builtin((USER_ID, USER_NAME), USER_ID, serviceId=USER_ID, name=USER_NAME,
                                   detectPoint="server", source="builtin")

    def tables(self) -> tuple[Table, ...]:
        return (self.services, self.instances, self.endpoints, self.addresses)

    def promote(self, now: float) -> None:
        for table in self.tables():
            table.promote(now)

    def reset(self) -> None:
        """Forget everything, like a wiped OAP storage (built-ins come back)."""
        for table in self.tables():
            table.clear()
        self.v3_instances.clear()
        self._add_builtins()

    # -- read helpers used by the rules and the normalizer (created rows only) --

    def service_name(self, service_id: int) -> str | None:
        entry = self.services.get(service_id)
        return entry.attrs["name"] if entry else None

    def instance(self, instance_id: int) -> Entry | None:
        return self.instances.get(instance_id)

    def instance_service_id(self, instance_id: int) -> int | None:
        entry = self.instances.get(instance_id)
        return entry.attrs["serviceId"] if entry else None

    def instance_name(self, instance_id: int) -> str | None:
        entry = self.instances.get(instance_id)
        return entry.attrs["name"] if entry else None

    def endpoint_name(self, endpoint_id: int) -> str | None:
        entry = self.endpoints.get(endpoint_id)
        return entry.attrs["name"] if entry else None

    def address_name(self, address_id: int) -> str | None:
        entry = self.addresses.get(address_id)
        return entry.attrs["address"] if entry else None

    def find_endpoint(self, service_id: int, name: str) -> int:
        """Look an endpoint up by name without creating it; an empty name never exists (docs/protocol/sw6.md §8.13)."""
        if not name:
            return 0
        return self.endpoints.lookup((service_id, name))

    # -- snapshot for the HTTP API --

    def snapshot(self) -> dict[str, Any]:
        services = [{"id": e.id, **_public(e.attrs)} for e in self.services.created()]
        instances = []
        for e in self.instances.created():
            attrs = _public(e.attrs)
            attrs["service"] = self.service_name(e.attrs["serviceId"])
            instances.append({"id": e.id, **attrs})
        endpoints = []
        for e in self.endpoints.created():
            attrs = _public(e.attrs)
            attrs["service"] = self.service_name(e.attrs["serviceId"])
            endpoints.append({"id": e.id, **attrs})
        addresses = []
        for e in self.addresses.created():
            attrs = _public(e.attrs)
            mapped = attrs.get("mappedServiceId")
            attrs["mappedService"] = self.service_name(mapped) if mapped else None
            addresses.append({"id": e.id, **attrs})
        v3 = [{"service": s, "serviceInstance": i, **dict(attrs)}
              for (s, i), attrs in sorted(self.v3_instances.items())]
        pending = {t.kind + "s": t.pending_count() for t in self.tables()}
        return {"services": services, "instances": instances, "endpoints": endpoints, "addresses": addresses,
                "v3Instances": v3, "pendingCreations": pending}


def _public(attrs: dict[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    if "properties" in out:
        out["properties"] = dict(out["properties"])
    return out
