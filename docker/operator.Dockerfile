# syntax=docker/dockerfile:1
# walshard-operator: the Kubernetes operator (ShardedDatabase reconciler and control plane).
# Build from the repository root (see the Makefile's `images` target):
#   docker build -f docker/operator.Dockerfile -t walshard/operator:dev .
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
    && cargo build --release --locked -p walshard-operator --bin walshard-operator \
    && install -D -m 0755 target/release/walshard-operator /out/walshard-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="walshard-operator" \
      org.opencontainers.image.description="walshard operator: ShardedDatabase reconciler and control plane" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/walshard-operator /usr/local/bin/walshard-operator
# 65532 is distroless's `nonroot`; the chart's securityContext asks for the same UID.
USER 65532:65532
# /metrics and /healthz (WALSHARD_METRICS_ADDR, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/walshard-operator"]
