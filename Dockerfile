# syntax=docker/dockerfile:1
# tcplab in a container: a multi-stage build (the Rust toolchain stays in
# the build stage) and a small Debian runtime that runs as a non-root user
# with its SQLite database on a volume at /data.
#
#   docker build -t tcplab .
#   docker run --rm -p 8080:8080 -p 50051:50051 -v tcplab-data:/data tcplab
#
# or `docker compose up` (docker-compose.yml). Everything the binary serves
# (dashboard, labs, migrations, proto descriptors) is compiled into it, and
# protox compiles the proto, so neither stage needs protoc or other files.

ARG RUST_VERSION=1
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and target/ between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tcplab \
    && install -m 0755 target/release/tcplab /usr/local/bin/tcplab

FROM debian:${DEBIAN}-slim AS runtime
# A fixed, unprivileged uid/gid, so a bind-mounted /data can be chowned to it.
RUN groupadd --system --gid 10001 tcplab \
    && useradd --system --uid 10001 --gid tcplab --home-dir /data --shell /usr/sbin/nologin tcplab \
    && mkdir -p /data \
    && chown tcplab:tcplab /data
COPY --from=build /usr/local/bin/tcplab /usr/local/bin/tcplab
USER tcplab:tcplab
WORKDIR /data
VOLUME ["/data"]
# REST API, dashboard and /metrics; gRPC.
EXPOSE 8080 50051
ENV RUST_LOG=info
# GET /healthz with bash alone (the slim image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/tcplab"]
# Listen on every interface inside the container; the database on the volume.
CMD ["serve", "--http", "0.0.0.0:8080", "--grpc", "0.0.0.0:50051", "--db", "/data/tcplab.db"]
