"""The checked-in descriptor set is the .proto compiled, and speaks tritonclient's wire format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tritonclient.grpc.service_pb2 as triton_pb2
from google.protobuf import descriptor_pb2

from server.web.grpc import messages
from server.web.grpc.service import BEHAVIOURS

GRPC_DIR = Path(messages.__file__).parent


def _descriptors(raw: bytes) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(raw)


def test_the_descriptor_set_is_the_proto_compiled(tmp_path: Path) -> None:
    """What `make protos` writes: compiled again here and compared message by message."""
    out = tmp_path / "inference.binpb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--include_imports",
         f"--descriptor_set_out={out}", "inference.proto"],
        cwd=GRPC_DIR, check=True, capture_output=True,
    )  # fmt: skip
    checked_in = _descriptors((GRPC_DIR / messages.DESCRIPTOR_SET).read_bytes())
    assert checked_in == _descriptors(out.read_bytes())


def test_every_method_of_the_service_has_its_behaviour() -> None:
    assert list(BEHAVIOURS) == messages.method_names()
    for name in ("ServerLive", "ModelInfer", "ModelStatistics", "RepositoryIndex"):
        assert name in BEHAVIOURS


def _fields(descriptor: object) -> dict[str, tuple[int, int]]:
    return {f.name: (f.number, f.type) for f in descriptor.fields}  # type: ignore[attr-defined]


def test_tritonclients_messages_have_the_same_fields_and_numbers() -> None:
    """Wire compatibility: each field tritonclient sends or reads has our number and type."""
    for method in messages.method_names():
        for ours in messages.method_types(method):
            theirs = getattr(triton_pb2, ours.DESCRIPTOR.name)
            shared = _fields(ours.DESCRIPTOR).keys() & _fields(theirs.DESCRIPTOR).keys()
            assert shared or not _fields(theirs.DESCRIPTOR), ours.DESCRIPTOR.name
            for name in shared:
                assert _fields(ours.DESCRIPTOR)[name] == _fields(theirs.DESCRIPTOR)[name], name
    request = messages.message("ModelInferRequest")(model_name="m", id="x")
    request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(b"\x01\x00\x00\x00a")
    decoded = triton_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert (decoded.model_name, decoded.inputs[0].shape, decoded.raw_input_contents) == (
        "m", [1], [b"\x01\x00\x00\x00a"]
    )  # fmt: skip


def test_the_messages_live_in_a_pool_of_their_own() -> None:
    """tritonclient's own ``inference.*`` are in protobuf's default pool, ours beside them."""
    ours = messages.message("ModelInferRequest").DESCRIPTOR
    assert ours.file.pool is messages.POOL
    assert triton_pb2.ModelInferRequest.DESCRIPTOR.full_name == ours.full_name
    assert triton_pb2.ModelInferRequest.DESCRIPTOR is not ours
