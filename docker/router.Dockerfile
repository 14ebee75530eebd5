# syntax=docker/dockerfile:1
# walshard-router: the seed HTTP API (port 5000), consistent hashing over the shards' replicas.
# Build from the repository root (see the Makefile's `images` target):
#   docker build -f docker/router.Dockerfile -t walshard/router:dev .
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# rust-toolchain.toml names the `stable` channel with rustfmt and clippy; the image's own
# toolchain builds the binary, so drop the file rather than let rustup download another.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    rm -f rust-toolchain.toml \
    && cargo build --release --locked -p walshard-router --bin walshard-router \
    && install -D -m 0755 target/release/walshard-router /out/walshard-router

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="walshard-router" \
      org.opencontainers.image.description="walshard router: the seed HTTP API over the shards" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/walshard-router /usr/local/bin/walshard-router
USER 65532:65532
# The binary's default listen address is loopback (right for the local fleet); in a pod the
# Service must reach it. The Deployment may override it.
ENV WALSHARD_LISTEN=0.0.0.0:5000
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/walshard-router"]
