"""The runtime plan: which engine, device, precision, workers and threads, decided once.

Everything that depends on the hardware or on optional packages is resolved
here from the settings and the CPU's features, before the model is loaded, so
that startup can fail early with a clear message and the rest of the server
reads one frozen answer.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch

from server.config import OPENVINO_FILE_SOURCES, Settings, model_source
from server.models.cores import usable_cores

logger = logging.getLogger(__name__)


class DeviceError(Exception):
    """The configured device or precision is not available on this machine."""


def resolve_device(setting: str) -> torch.device:
    """``auto`` means CUDA when available, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"BATCHSERVE_DEVICE={setting} but no CUDA device is available")
    return device


def cpu_has_fast_bf16() -> bool:
    """True on CPUs that compute bf16 natively (AMX or AVX-512 BF16); elsewhere it is emulated.

    Measured here on an AVX2-only AMD EPYC: eager bf16 ResNet-50 ran at 1.5
    images/s against 10 in fp32, so bf16 must never be chosen without them.
    """
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(
    setting: str, device: torch.device, engine: str = "torch", source: str = "torchvision"
) -> str:
    """``auto``: bf16 (fp16 on old GPUs) on CUDA, bf16 on CPUs with AMX/AVX-512 BF16, else fp32.

    ``auto`` never picks int8: it changes answers, so it is the user's choice.
    Model files run in fp32 on the torch engine (their graphs may fix dtypes).
    """
    if engine == "torch" and source != "torchvision":
        if setting not in {"auto", "fp32"}:
            raise DeviceError(
                f"BATCHSERVE_PRECISION={setting}: model files run in fp32 on the torch engine; "
                "use BATCHSERVE_ENGINE=openvino (CPU) for bf16 or int8, or a torchvision model"
            )
        return "fp32"
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise DeviceError("BATCHSERVE_PRECISION=fp16 needs a CUDA device; use fp32 or bf16")
    if setting == "int8" and (device.type != "cpu" or engine != "openvino"):
        raise DeviceError(
            "BATCHSERVE_PRECISION=int8 runs on the OpenVINO engine on the CPU: set "
            "BATCHSERVE_DEVICE=cpu and BATCHSERVE_ENGINE=openvino (or auto), with "
            "batchserve[openvino] installed"
        )
    return setting


def has_cxx_compiler() -> bool:
    """Inductor compiles CPU kernels with a C++ compiler (and triton its CUDA launchers with
    the same toolchain); slim containers have none."""
    names = (os.environ.get("CXX", ""), "g++", "c++", "clang++")
    return any(shutil.which(name) for name in names if name)


def resolve_compile(
    setting: str,
    device: torch.device,
    precision: str,
    engine: str = "torch",
    source: str = "torchvision",
) -> bool:
    """``auto`` compiles where it was measured to pay off: bf16 on the CPU, given a compiler.

    Only the torch engine compiles, and only torchvision models (files come as graphs).
    """
    if engine != "torch" or source != "torchvision":
        if setting == "on":
            raise DeviceError(
                f"BATCHSERVE_COMPILE=on compiles torchvision models on the torch engine, not "
                f"a {source} model on {engine}"
            )
        return False
    if setting == "auto":
        wanted = device.type == "cpu" and precision == "bf16"
        if wanted and not has_cxx_compiler():
            logger.warning("BATCHSERVE_COMPILE=auto: no C++ compiler (g++), serving eager")
            return False
        return wanted
    if setting == "on" and not has_cxx_compiler():
        raise DeviceError(
            "BATCHSERVE_COMPILE=on needs a C++ compiler (g++): install it (the image: "
            "--build-arg COMPILER=1), or set BATCHSERVE_COMPILE=off"
        )
    return setting == "on"


def resolve_streams(
    setting: str, device: torch.device, engine: str, cpu_flags: tuple[str, ...] = ()
) -> str:
    """How OpenVINO lays out its CPU streams: ``latency``, ``throughput`` or ``by-load``.

    ``auto`` is ``by-load`` for OpenVINO on CPUs with AMX and ``latency`` (one
    stream on every core, the fastest answer to a request alone) elsewhere.
    Measured (docs/performance.md): on a 2-core AMX Xeon, by-load served ResNet-50
    int8 at 110 / 169 / 186 req/s (c=1 / 10 / 32) against latency's 97 / 160 /
    172; on an AVX-512 EPYC without AMX it gained nothing, so it stays opt-in
    there. The other layouts change how batches share the cores, which only
    OpenVINO's CPU streams do; elsewhere they are refused.
    """
    on_openvino_cpu = device.type == "cpu" and engine == "openvino"
    if setting == "auto":
        return "by-load" if on_openvino_cpu and "amx_tile" in cpu_flags else "latency"
    if setting == "latency":
        return "latency"
    if not on_openvino_cpu:
        raise DeviceError(
            f"BATCHSERVE_CPU_STREAMS={setting} lays out OpenVINO's CPU streams: it needs "
            f"BATCHSERVE_ENGINE=openvino on the CPU, not the {engine} engine on {device}"
        )
    return setting


def resolve_workers(
    setting: int | str, device: torch.device, streams: str = "latency", cores: int = 1
) -> int:
    """``auto``: on the CPU one worker using every core, or one per core (throughput, by-load);
    two on CUDA (copy/compute overlap)."""
    if setting != "auto":
        return int(setting)
    if device.type == "cuda":
        return 2
    return 1 if streams == "latency" else cores


def resolve_solo_threads(streams: str, cores: int, workers: int) -> int | None:
    """With streams by load, the threads of the latency stream a batch alone runs on."""
    return cores if streams == "by-load" and workers > 1 else None


def resolve_threads(
    device: torch.device, workers: int, setting: int | str = "auto", cores: int | None = None
) -> int:
    """Compute threads per worker: ``auto`` splits the usable cores between CPU workers.

    On CUDA the host side only launches kernels, so one thread per worker is enough.
    """
    if setting != "auto":
        return int(setting)
    if device.type == "cpu":
        return max(1, (cores or usable_cores()) // workers)
    return 1


def resolve_decode_threads(setting: int | str, cores: int) -> int:
    """Image-decoding threads: ``auto`` is one per usable core.

    Decoding and the forward pass take turns on the cores (the decode threads
    wait for uploads and are niced below the event loop), so the two pools
    together are sized to the cores, not each to half of them.
    """
    return cores if setting == "auto" else int(setting)


def resolve_torch_threads(engine: str, threads_per_worker: int) -> int:
    """torch's OpenMP team in each inference thread: the worker's threads on the torch engine.

    On OpenVINO nothing in the forward pass calls torch (NumPy stacks the batch
    and ranks the answers), and OpenVINO has its own threads: a torch team of
    one there keeps an accidental torch call from waking a second team.
    """
    return threads_per_worker if engine == "torch" else 1


def openvino_version() -> str | None:
    """OpenVINO's version when the optional extra is installed, else None."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def resolve_engine(setting: str, device: torch.device, source: str = "torchvision") -> str:
    """``auto``: OpenVINO on the CPU when installed (measured faster there), torch otherwise.

    ONNX and OpenVINO IR files run on OpenVINO only.
    """
    available = openvino_version() is not None
    if source in OPENVINO_FILE_SOURCES and setting == "torch":
        raise DeviceError(
            f"BATCHSERVE_ENGINE=torch cannot run an {OPENVINO_FILE_SOURCES[source]} file: use "
            "BATCHSERVE_ENGINE=openvino (or auto) on the CPU, or export the model as "
            "TorchScript or .pt2"
        )
    if setting == "auto":
        if source in OPENVINO_FILE_SOURCES:
            return resolve_engine("openvino", device, source)
        return "openvino" if device.type == "cpu" and available else "torch"
    if setting == "openvino":
        if device.type != "cpu":
            raise DeviceError(
                f"BATCHSERVE_ENGINE=openvino runs on the CPU, not {device}; "
                "use BATCHSERVE_ENGINE=torch (or auto) on CUDA"
            )
        if not available:
            raise DeviceError(
                "BATCHSERVE_ENGINE=openvino but OpenVINO is not installed: "
                "pip install 'batchserve[openvino]', or set BATCHSERVE_ENGINE=torch"
            )
    return setting


def batch_buckets(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes a compiled model runs: powers of two, and the maximum itself."""
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


@dataclass(frozen=True, slots=True)
class RuntimePlan:
    """How this server computes: decided once at startup, read by everything else."""

    engine: str
    device: torch.device
    precision: str
    compiled: bool
    workers: int
    threads_per_worker: int
    max_batch_size: int
    max_batch_wait_ms: float
    cpu: str
    cpu_flags: tuple[str, ...]
    #: The cores this process may use (affinity mask and cgroup quota), which the pools share.
    cores: int
    #: Image-decoding threads (shared by every model of the process).
    decode_threads: int
    #: torch's OpenMP threads in each inference thread.
    torch_threads: int
    #: OpenVINO's CPU stream layout: ``latency``, ``throughput`` or ``by-load``.
    streams: str = "latency"
    #: By load: a batch with no other in flight and none queued runs on this many threads
    #: (a stream of every core); the others on ``threads_per_worker``. None: always those.
    solo_threads: int | None = None

    @property
    def batch_buckets(self) -> tuple[int, ...]:
        """Powers of two up to the largest batch, and it: padded sizes, histogram buckets."""
        return batch_buckets(self.max_batch_size)

    def describe(self) -> str:
        """One line for the startup log."""
        compiled = ", compiled" if self.compiled else ""
        solo = f", a batch alone on {self.solo_threads}" if self.solo_threads else ""
        return (
            f"{self.engine} on {self.device} ({self.cpu}; {' '.join(self.cpu_flags) or 'no'} "
            f"vector extensions; {self.cores} usable core(s)), {self.precision}{compiled}, "
            f"{self.workers} worker(s) x {self.threads_per_worker} thread(s){solo} (torch: "
            f"{self.torch_threads}; streams: {self.streams}), {self.decode_threads} decode "
            f"thread(s), batches of up to {self.max_batch_size} within "
            f"{self.max_batch_wait_ms:g} ms"
        )


def resolve_plan(settings: Settings) -> RuntimePlan:
    """The plan for ``settings`` on this machine; DeviceError when it cannot work here."""
    device = resolve_device(settings.device)
    source = model_source(settings.model)
    engine = resolve_engine(settings.engine, device, source)
    precision = resolve_precision(settings.precision, device, engine, source)
    compiled = resolve_compile(settings.compile, device, precision, engine, source)
    cpu, flags = cpu_features()
    streams = resolve_streams(settings.cpu_streams, device, engine, flags)
    cores = usable_cores()
    workers = resolve_workers(settings.workers, device, streams, cores)
    threads = resolve_threads(device, workers, settings.threads_per_worker, cores)
    return RuntimePlan(
        engine=engine,
        device=device,
        precision=precision,
        compiled=compiled,
        workers=workers,
        threads_per_worker=threads,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_ms=settings.max_batch_wait_ms,
        cpu=cpu,
        cpu_flags=flags,
        cores=cores,
        decode_threads=resolve_decode_threads(settings.preprocess_threads, cores),
        torch_threads=resolve_torch_threads(engine, threads),
        streams=streams,
        solo_threads=resolve_solo_threads(streams, cores, workers),
    )


#: The CPU features that decide speed here: vector widths, int8 dot products, bf16, AMX.
_INTERESTING_FLAGS: Final = (
    "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
    "amx_int8",
)  # fmt: skip


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of the flags that matter it has (Linux; elsewhere none)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU", ()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags_line = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("flags")), "")
    present = set(flags_line.split())
    found = tuple(flag for flag in _INTERESTING_FLAGS if flag in present)
    return name or platform.processor() or "unknown CPU", found
