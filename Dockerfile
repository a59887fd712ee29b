# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build -t promptmm-api .                        # the API (default, last stage)
#   docker build -t promptmm-trainer --target trainer .   # GPU training (torch with CUDA)
#
# The API image holds the `service` extra only: no torch, no CUDA, no training code. It is
# configured by environment variables only (PROMPTMM_<SETTING>, REDIS_URL: see
# deploy/.env.example) and reads the model bundle from a volume mounted at /models.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------
# builder: a virtualenv with the service extra, copied whole into the runtime stage.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bundle/ bundle/
COPY service/ service/
RUN pip install ".[service]"
RUN python -c "import importlib.util as u, sys; sys.exit('torch must not be in the API image' if u.find_spec('torch') else 0)"

# ---------------------------------------------------------------------------------------
# trainer: `python -m training run CONFIG` on a GPU; writes bundles to /app/models.
# PyPI's Linux torch wheels carry the CUDA runtime libraries (nvidia-* wheels); the host
# only needs the NVIDIA driver and the container toolkit (docker run --gpus all).
FROM ${PYTHON_IMAGE} AS trainer
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    OMP_WAIT_POLICY=PASSIVE \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PROMPTMM_SHARED_DATASETS=/datasets
RUN groupadd --system --gid 10001 promptmm \
    && useradd --system --uid 10001 --gid promptmm --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin promptmm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bundle/ bundle/
COPY training/ training/
COPY configs/ configs/
RUN pip install ".[training]" \
    && mkdir -p /app/models /app/runs /datasets \
    && chmod 1777 /app/models /app/runs
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["run", "configs/tiktok.toml", "--device", "cuda"]

# ---------------------------------------------------------------------------------------
# api: slim runtime, non-root, bundle from /models (read-only), embedded store on /data.
FROM ${PYTHON_IMAGE} AS api
RUN groupadd --system --gid 10001 promptmm \
    && useradd --system --uid 10001 --gid promptmm --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin promptmm \
    && mkdir -p /models /data \
    && chown promptmm:promptmm /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMPTMM_BUNDLE_PATH=/models/tiktok \
    PROMPTMM_STORE_PATH=/data/promptmm.sqlite3
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["uvicorn", "service.main:create_app", "--factory", "--http", "service.http:BoundedHttpProtocol", "--host", "0.0.0.0", "--port", "8000"]
