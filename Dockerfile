# Multi-stage build: compile with the full Rust toolchain, run on a small
# distroless image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin worker-pool

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/worker-pool /usr/local/bin/worker-pool
ENV HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    WORKERS=5 \
    POOL_SIZE=10 \
    SHUTDOWN_TIMEOUT=10 \
    WORK_MIN_MS=1000 \
    WORK_MAX_MS=5000 \
    MAX_BODY_BYTES=65536 \
    MAX_CONNECTIONS=10000 \
    IDLE_TIMEOUT=60
USER nonroot
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/worker-pool"]
