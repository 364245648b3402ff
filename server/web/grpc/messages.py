"""The protocol's message classes, from the descriptor set checked in beside this module.

``inference.binpb`` is ``inference.proto`` compiled by grpcio-tools (``make protos``,
checked by tests/server/web/grpc/test_messages.py). It is loaded into a pool of
its own, not protobuf's default one: tritonclient and the KServe SDK register
their own ``inference.*`` messages in the default pool under the same names,
and a second registration there fails ("duplicate symbol"). With a private
pool the server, both clients and their tests share one process.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

#: The gRPC service's full name: methods are ``/inference.GRPCInferenceService/<Name>``.
SERVICE: Final = "inference.GRPCInferenceService"
DESCRIPTOR_SET: Final = "inference.binpb"


def _pool() -> descriptor_pool.DescriptorPool:
    raw = files(__package__).joinpath(DESCRIPTOR_SET).read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(raw).file:
        pool.Add(proto)
    return pool


POOL: Final = _pool()


def message(name: str) -> Any:
    """The class of ``inference.<name>``.

    Typed ``Any``: the classes are built at run time from the descriptors, so no
    stubs name their fields.
    """
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"inference.{name}"))


def reply(message_name: str, **fields: Any) -> Message:
    """A new ``inference.<message_name>`` with ``fields`` set."""
    built: Message = message(message_name)(**fields)
    return built


def method_names() -> list[str]:
    """Every method the service declares, in the file's order."""
    return [method.name for method in POOL.FindServiceByName(SERVICE).methods]


def method_types(name: str) -> tuple[type[Message], type[Message]]:
    """The request and response classes of method ``name``."""
    method = POOL.FindServiceByName(SERVICE).FindMethodByName(name)
    request = message_factory.GetMessageClass(method.input_type)
    response = message_factory.GetMessageClass(method.output_type)
    return request, response
