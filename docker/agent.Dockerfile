# syntax=docker/dockerfile:1
# walshard-agent: the shard agent, the second container of every server pod (beside MySQL).
# Build from the repository root (see the Makefile's `images` target):
#   docker build -f docker/agent.Dockerfile -t walshard/agent:dev .
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
    && cargo build --release --locked -p walshard-agent --bin walshard-agent \
    && install -D -m 0755 target/release/walshard-agent /out/walshard-agent

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="walshard-agent" \
      org.opencontainers.image.description="walshard shard agent: per-shard WAL, replication, the seed server API" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/walshard-agent /usr/local/bin/walshard-agent
USER 65532:65532
# The binary's default listen address is loopback (right for the local fleet); in a pod the
# agent must be reachable from the router and the other replicas. The pod spec may override it.
ENV WALSHARD_LISTEN=0.0.0.0:5001
EXPOSE 5001
ENTRYPOINT ["/usr/local/bin/walshard-agent"]
