# syntax=docker/dockerfile:1
# batchserve: CPU image by default (PyTorch's CPU-only wheels, about 1 GB);
#   docker build -t batchserve .
# CUDA image (PyPI's torch wheels are the CUDA builds; run with the NVIDIA container toolkit):
#   docker build --build-arg VARIANT=cuda --build-arg TORCH_INDEX=https://pypi.org/simple -t batchserve:cuda .
# Both install requirements/runtime-<variant>.txt, pinned by scripts/lock.py.
# Weights are baked in at build time (BAKE_WEIGHTS=1) so containers start offline:
#   --build-arg BATCHSERVE_MODEL=mobilenet_v2 --build-arg BATCHSERVE_WEIGHTS=DEFAULT
# COMPILER=1 adds g++ and keeps torch's headers, which BATCHSERVE_COMPILE needs (+~250 MB).
# The CPU image serves with OpenVINO (+~180 MB). PRECISION=int8 quantizes at build time with
# `batchserve quantize` (NNCF is installed in the build stage only) and bakes the int8 model
# into the image's cache, so containers serve int8 at once:
#   docker build --build-arg PRECISION=int8 -t batchserve:int8 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Pinned dependencies first: this layer is reused until the lock file changes.
COPY requirements/runtime-${VARIANT}.txt requirements/
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
        -r "requirements/runtime-${VARIANT}.txt"
COPY pyproject.toml README.md LICENSE ./
# What serving needs: the server, its batcher, and the client that `batchserve predict` uses.
COPY batcher/ batcher/
COPY server/ server/
COPY batchserve_client/ batchserve_client/
ARG COMPILER=0
# Not needed at runtime: pip itself, and (without a compiler) torch's C++ headers.
RUN pip install --no-deps . \
    && pip uninstall --yes pip \
    && if [ "${COMPILER}" != "1" ]; then rm -rf /opt/venv/lib/python3.11/site-packages/torch/include; fi

FROM build AS weights
ARG BAKE_WEIGHTS=1
ARG BATCHSERVE_MODEL=resnet50
ARG BATCHSERVE_WEIGHTS=DEFAULT
ARG PRECISION=auto
ARG NNCF_VERSION=3.4.0
# The int8 extra's SciPy (the fidelity report's Wilson interval), as the tests ran it.
ARG SCIPY_VERSION=1.17.1
ENV TORCH_HOME=/opt/torch \
    BATCHSERVE_CACHE_DIR=/opt/batchserve-cache
# The same code the server runs at startup: torchvision's registry into TORCH_HOME; and, for
# int8, the same quantization into the cache (pip and NNCF only in this throw-away stage).
RUN mkdir -p /opt/torch /opt/batchserve-cache \
    && if [ "${BAKE_WEIGHTS}" = "1" ]; then \
        python -c "from server.models.torchvision_models import ensure_weights, resolve_weights; \
ensure_weights(resolve_weights('${BATCHSERVE_MODEL}', '${BATCHSERVE_WEIGHTS}'))"; \
    fi \
    && if [ "${PRECISION}" = "int8" ]; then \
        python -m ensurepip \
        && python -m pip install --no-cache-dir "nncf==${NNCF_VERSION}" "scipy==${SCIPY_VERSION}" \
        && batchserve quantize --model "${BATCHSERVE_MODEL}" --weights "${BATCHSERVE_WEIGHTS}"; \
    fi

FROM ${PYTHON_IMAGE} AS runtime
ARG BATCHSERVE_MODEL=resnet50
ARG BATCHSERVE_WEIGHTS=DEFAULT
ARG PRECISION=auto
ARG COMPILER=0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if [ "${COMPILER}" = "1" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends g++=4:12.2.0-3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi
LABEL org.opencontainers.image.title="batchserve" \
      org.opencontainers.image.description="Dynamic-batching HTTP inference server for image classifiers" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin batchserve
COPY --from=build /opt/venv /opt/venv
COPY --from=weights --chown=10001:10001 /opt/torch /opt/torch
COPY --from=weights --chown=10001:10001 /opt/batchserve-cache /home/batchserve/.cache/batchserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TORCH_HOME=/opt/torch \
    BATCHSERVE_HOST=0.0.0.0 \
    BATCHSERVE_PORT=8000 \
    BATCHSERVE_GRPC_PORT=8001 \
    BATCHSERVE_MODEL=${BATCHSERVE_MODEL} \
    BATCHSERVE_WEIGHTS=${BATCHSERVE_WEIGHTS} \
    BATCHSERVE_PRECISION=${PRECISION} \
    BATCHSERVE_CACHE_DIR=/home/batchserve/.cache/batchserve \
    BATCHSERVE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/batchserve
RUN mkdir -p /home/batchserve/.cache/batchserve
# HTTP, and the Open Inference Protocol over gRPC.
EXPOSE 8000 8001
# Healthy means able to serve: /ready (loaded, warmed up, batcher alive, not draining), the same
# probe as docker-compose.yml. /health would stay 200 after a fatal batcher error, and Docker's
# health status is what compose's service_healthy, Swarm and ECS act on. Kubernetes ignores
# this and probes /health (liveness) and /ready (readiness) itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["batchserve"]
