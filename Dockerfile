# syntax=docker/dockerfile:1
# Build: docker build -t probed .        (podman: podman build --format docker -t probed .)
# Run:   docker run -p 127.0.0.1:10115:10115 -v $PWD/probes.toml:/etc/probed/probes.toml:ro probed
#
# BASE: any image with python3 (3.11 or later) and its venv module, the same in both stages:
# python:3.11-slim by default, or e.g. Debian bookworm with python3-venv. The daemon and its
# dependencies live in a virtual environment at /opt/probed, so a distribution's python3
# that refuses system-wide installs (PEP 668) works as well as the official image's.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probed ./probed
RUN python3 -m venv /opt/probed \
 && /opt/probed/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${BASE}
RUN groupadd --system --gid 10115 probed \
 && useradd --system --uid 10115 --gid probed --home-dir /var/lib/probed --create-home probed
COPY --from=build /opt/probed /opt/probed
# The repository's starter config (it probes `probed demo`); mount your own over it.
COPY probes.toml /etc/probed/probes.toml
USER probed
ENV PATH=/opt/probed/bin:$PATH \
    PROBED_DAEMON__LISTEN=0.0.0.0:10115 \
    PROBED_DAEMON__STATE_DIR=/var/lib/probed \
    PROBED_CONFIG=/etc/probed/probes.toml
EXPOSE 10115
# With a web config (TLS, basic auth) the check needs what a client needs: set
# PROBED_CLIENT_USER and PROBED_CLIENT_PASSWORD_FILE, and PROBED_CLIENT_CA_FILE
# (or PROBED_CLIENT_INSECURE_SKIP_VERIFY=1: the check dials loopback inside the container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["probed", "healthcheck", "--timeout", "3"]
ENTRYPOINT ["probed"]
CMD ["run"]
