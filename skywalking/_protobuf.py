"""Message classes for the generated modules, built without touching protobuf's global registry.

protobuf's ``builder.BuildTopDescriptorsAndMessages`` registers every class in the process-wide
symbol database; under the pure-Python implementation (protobuf < 4, or forced) that also adds the
descriptors to the *default* pool. The v6 protos have no package, so names such as ``Commands``
would then collide with any application proto of the same name. The generated modules call
``build_messages`` instead (tools/gen_protos.py rewrites them), keeping everything in their
private pool.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.internal import enum_type_wrapper


def _message_class(descriptor: Any) -> type:
    get = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get is not None:
        return get(descriptor)
    # protobuf < 4.22 (the stubs describe newer releases)
    return message_factory.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)  # type: ignore[attr-defined]


def build_messages(file_descriptor: Any, module_name: str, namespace: dict[str, Any]) -> None:
    """Top-level enums, enum values, service descriptors and message classes into ``namespace``."""
    for name, enum in file_descriptor.enum_types_by_name.items():
        namespace["_" + name.upper()] = enum
        namespace[name] = enum_type_wrapper.EnumTypeWrapper(enum)
        for value in enum.values:
            namespace[value.name] = value.number
    for name, service in file_descriptor.services_by_name.items():
        namespace["_" + name.upper()] = service
    for name, descriptor in file_descriptor.message_types_by_name.items():
        if descriptor.nested_types:
            raise NotImplementedError(f"{descriptor.full_name}: nested messages are not supported here")
        cls = _message_class(descriptor)
        try:
            cls.__module__ = module_name
        except (AttributeError, TypeError):  # some C implementations keep it read-only
            pass
        namespace[name] = cls
