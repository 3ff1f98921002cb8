# syntax=docker/dockerfile:1
# Build: docker build -t probed .
# Run:   docker run -p 127.0.0.1:10115:10115 -v $PWD/probes.toml:/etc/probed/probes.toml:ro probed
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probed ./probed
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10115 --home-dir /var/lib/probed --create-home probed
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER probed
ENV PROBED_DAEMON__LISTEN=0.0.0.0:10115 \
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
