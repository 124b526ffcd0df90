# The dfx_pipelines code location as a container image: the gRPC code server the Dagster Helm chart's
# user-code deployment runs, and the image every run pod the K8sRunLauncher starts from it.
# Build from the repository root: docker build -t REGISTRY/dfx-pipelines:VERSION .  (see deploy/README.md)
#
# No secret enters the image: the build context is an allowlist (.dockerignore), nothing here reads a key,
# and the vault master key, database URLs and OAuth app secrets arrive at run time as environment variables
# from Kubernetes secrets (deploy/values.yaml). deploy tests parse this file and hold it to that.

# An exact patch release of the Python the project requires (3.11); pin the digest as well
# (python:3.11.14-slim-bookworm@sha256:...) once your registry mirror has resolved it.
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY dfx_pipelines ./dfx_pipelines
# The package and every dependency at the versions CI tested (constraints.txt), plus the k8s extra: a run
# worker loads the instance, whose run launcher is the K8sRunLauncher.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt ".[k8s]"

FROM python:3.11.14-slim-bookworm

# A fixed numeric uid, so the pod's runAsNonRoot can verify it (deploy/values.yaml runs as the same uid).
RUN groupadd --system --gid 10001 dfx \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/dfx --create-home dfx \
    && mkdir -p /opt/dagster/dagster_home \
    && chown -R 10001:10001 /opt/dagster

COPY --from=build /opt/venv /opt/venv

# DFX_MODE=production: without DFX_MASTER_KEY the code refuses to start rather than generate a key file, and
# sandbox hosts and the sandbox CA are refused. DAGSTER_HOME is where the chart mounts the instance config.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DFX_MODE=production \
    DFX_HOME=/home/dfx/.dfx \
    DAGSTER_HOME=/opt/dagster/dagster_home

USER 10001:10001
WORKDIR /home/dfx
EXPOSE 3030

# The chart replaces these arguments with its own `dagster code-server start -h 0.0.0.0 -p PORT ...` (and run
# pods with `dagster api execute_run ...`); this default serves the same code location outside the chart.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "dfx_pipelines.definitions"]
