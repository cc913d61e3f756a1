# Runtime image of a compute host: the domain package, the flows, blocks and the reference simulator.
# Production builds use the normal base; offline builds pass a local one
# (make image does that: a debootstrap'd Debian with python3).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# .build/wheels is a wheelhouse made on the host (pip inside a container cannot
# verify TLS on offline machines); it is empty for ordinary online builds.
COPY deployments/runtime-requirements.txt /tmp/runtime-requirements.txt
COPY .build/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
 && if [ -n "$(ls -A /tmp/wheels)" ]; then \
      pip install --no-cache-dir --no-index --find-links /tmp/wheels -r /tmp/runtime-requirements.txt; \
    else \
      pip install --no-cache-dir -r /tmp/runtime-requirements.txt; \
    fi \
 && rm -rf /tmp/wheels

WORKDIR /opt/opeva
COPY pyproject.toml ./
# The domain (no Prefect), the reference simulator (its own program), and the thin
# Prefect layer over them. The REST API and the deployment tools are not needed here.
COPY core/ core/
COPY simulator/ simulator/
COPY blocks/ blocks/
COPY flows/ flows/
ENV PYTHONPATH=/opt/opeva
