# Multi-stage build: compile with the full Rust toolchain, run on a small
# distroless image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: built against stand-in
# sources, so a change under src/ rebuilds only the crate itself. The
# manifest names four benches ([[bench]]), which must exist to be read;
# stand-ins do, as nothing here builds them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for bench in store queue json http; do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --release --locked --bin worker-pool \
    && rm -rf src

# The crate itself. COPY keeps the files' own times, which may be older than
# the stand-ins' build: touch them so cargo sees they changed.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin worker-pool

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/worker-pool /usr/local/bin/worker-pool
# Defaults are built in (worker-pool --help); only what differs in a
# container is set here. SHUTDOWN_TIMEOUT stays under docker stop's default
# 10 s grace before SIGKILL: for a longer drain raise both, e.g.
# docker run --stop-timeout 70 -e SHUTDOWN_TIMEOUT=60.
ENV HTTP_HOST=0.0.0.0 \
    SHUTDOWN_TIMEOUT=8
USER nonroot
EXPOSE 8080
STOPSIGNAL SIGTERM
# Exec form: distroless has no shell. The check reads the same settings.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/worker-pool", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/worker-pool"]
