# textus-relay container image (README.md, "Deployment": "Container").
#
#   docker build -t textus-relay:0.1.0 .
#   docker run -d --name relay -p 8443:8443 -v relay-data:/data \
#     -e TEXTUS_WEBHOOK_SECRET=textus-... -e RELAY_ADMIN_TOKEN=... -e TARGET_URL=https://... \
#     textus-relay:0.1.0
#
# tests/it/container.rs runs the binary with this file's USER, ENTRYPOINT, CMD and HEALTHCHECK
# and the config it copies, so keep each of those instructions on one line.

# The toolchain the relay is developed and tested with (`rustc --version`).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-trixie AS build
# pingora's zlib-ng is built with cmake; rusqlite's bundled SQLite and ring need a C compiler.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake make gcc g++ libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package textus-relay --bin textus-relay \
 && install -D -m 0755 target/release/textus-relay /out/textus-relay \
 && install -d -m 0700 /out/data

# Distroless: glibc and CA certificates, no shell; the same Debian release as the build stage.
FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /out/textus-relay /usr/local/bin/textus-relay
COPY deploy/container/relay.yaml /etc/textus-relay/relay.yaml
# The store, its WAL, the pid file and the upgrade socket live here; the non-root user owns it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# 8443: TextUs webhooks (plain HTTP: terminate TLS in front, or set listen.tls). 9090: admin API.
EXPOSE 8443 9090
HEALTHCHECK --interval=15s --timeout=10s --start-period=10s --retries=3 CMD ["/usr/local/bin/textus-relay", "health", "--config", "/etc/textus-relay/relay.yaml"]
ENTRYPOINT ["/usr/local/bin/textus-relay"]
CMD ["--log-format", "json", "run", "--config", "/etc/textus-relay/relay.yaml"]
