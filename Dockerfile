# vigil broker image: `docker build -t vigil .`, then see compose.yaml.
# The image holds the broker only; detector modules are built with
# `vigil detector build` on a developer machine and uploaded over the admin API.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables (debug = 1) for backtraces; strip
# the rest to keep the image small.
RUN cargo build --release --locked -p vigil \
 && strip --strip-debug target/release/vigil \
 && cp target/release/vigil /usr/local/bin/vigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/vigil vigil \
 && mkdir -p /var/lib/vigil && chown vigil /var/lib/vigil
COPY --from=build /usr/local/bin/vigil /usr/local/bin/vigil
USER vigil
VOLUME /var/lib/vigil
# Kafka, then the admin API (/healthz, /metrics, /v1, /openapi.json).
EXPOSE 9092 9644
ENV VIGIL_DATA_DIR=/var/lib/vigil \
    VIGIL_LISTEN=0.0.0.0:9092 \
    VIGIL_ADMIN_LISTEN=0.0.0.0:9644 \
    VIGIL_LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/9644 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
ENTRYPOINT ["/usr/bin/tini", "--", "vigil"]
CMD ["serve"]
