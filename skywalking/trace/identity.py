"""Who reports a segment: the process identity (service, instance) as the agent knows it before and
after the OAP has issued ids for it.

An identity is a plain tuple ``(service, instance name, instance UUID, properties)`` so that it can travel
inside a Ray call (pickled with the call, readable by any process that runs the agent) and be registered
with the OAP by whichever process needs its id first: the OAP de-duplicates instances by service id and
UUID, so the owner and any callee registering it on the owner's behalf get the same instance id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

Identity = tuple[str, str, str, tuple[tuple[str, str], ...]]

# field indexes; Final so that a type checker knows which field ``identity[UUID]`` is
SERVICE: Final = 0
NAME: Final = 1
UUID: Final = 2
PROPERTIES: Final = 3


def new_identity(service: str, instance: str, properties: Iterable[tuple[str, str]] = ()) -> Identity:
    """A fresh identity: a new UUID every time (one OAP instance per identity)."""
    return (service, instance, uuid.uuid4().hex, tuple((str(k), str(v)) for k, v in properties))


def is_identity(value: object) -> bool:
    """True for a well-formed identity tuple (what arrives from another process is checked first)."""
    return (type(value) is tuple and len(value) == 4 and all(type(v) is str for v in value[:3])
            and bool(value[0]) and bool(value[2]) and type(value[3]) is tuple
            and all(type(p) is tuple and len(p) == 2 for p in value[3]))


NO_IDENTITY: Identity = ("", "", "", ())


class Unresolved(LookupError):
    """A segment names identities the backend has issued no ids for yet (``identities``): an encoder raises
    it, the reporter asks for the ids and encodes the segment again once they arrive."""

    def __init__(self, identities: list[Identity]) -> None:
        super().__init__(f"{len(identities)} instance(s) not registered yet")
        self.identities = identities
