# syntax=docker/dockerfile:1.7
#
# Tradeplane container images: one image per binary, picked with a build target.
#
#   docker build --target platform -t tradeplane-platform:dev .   # the trading service
#   docker build --target operator -t tradeplane-operator:dev .   # the Kubernetes operator
#
# Both targets share every stage up to `builder`, so building the second one after the first
# reuses the cached compile and only copies a different binary. One image per binary (rather
# than one image holding both) keeps each image small, gives each its own vulnerability surface
# and version tag, and keeps the operator's cluster-facing code out of the pods that run the
# trading service (and the other way round). The platform image carries the `backup`/`restore`
# subcommands, so the operator's backup CronJob runs the platform image too.
#
# Build: static musl binaries on Alpine (no glibc needed at run time), dependency layer cooked by
# cargo-chef apart from the sources, release profile with thin LTO and stripped symbols.
# Run: distroless `static` (CA certificates, /etc/passwd, tzdata, /tmp; no shell, no package
# manager), numeric non-root user 65532.
#
# The fast allocator: musl's own malloc is slow under multi-threaded load, so the platform is
# built with mimalloc through the Cargo feature named in CARGO_FEATURES (each binary crate has an
# optional `mimalloc` feature that installs `mimalloc::MiMalloc` as the global allocator).
# Build without it with `--build-arg CARGO_FEATURES=`. The operator keeps musl's malloc: its
# work is API calls, not allocation, and at 1,000 TradingPlatforms musl's malloc peaks at 27 MiB
# where mimalloc with its defaults peaks at 66-68 MiB (same convergence time; mimalloc uses about
# 0.7 s less CPU over the 10 s start), measured with the musl build in scripts/bench-operator.sh
# (TARGET=musl; docs/operator.md, "Scale benchmark").

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

# ---------------------------------------------------------------------------------------------
# chef: the toolchain, C compiler for the crates that build C (ring, libsqlite3-sys, mimalloc)
# and cargo-chef.
FROM rust:${RUST_VERSION}-alpine AS chef
ARG CARGO_CHEF_VERSION
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev gcc make \
    && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src
# Profile settings live here (not in Cargo.toml) so `cook` and `build` compile with the same
# flags and the cooked dependency layer is reused. panic stays `unwind`: the HTTP stack catches
# handler panics.
ENV CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never

# ---------------------------------------------------------------------------------------------
# planner: reduce the workspace to a recipe (manifests and lock file only). The recipe changes
# only when dependencies change, which is what keeps the next stage cached.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------------
# builder: compile the dependencies from the recipe (cached layer), then the workspace sources.
# The last step fails the build if a binary is not fully static (the run stage has no libc).
FROM chef AS builder
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ARG CARGO_FEATURES="tradeplane-platform/mimalloc"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        -p tradeplane-platform -p tradeplane-operator \
        ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}
COPY . .
RUN cargo build --release --locked \
        -p tradeplane-platform -p tradeplane-operator \
        ${CARGO_FEATURES:+--features "$CARGO_FEATURES"} \
    && mkdir -p /out/data \
    && cp target/release/tradeplane-platform target/release/tradeplane-operator /out/ \
    && for b in /out/tradeplane-platform /out/tradeplane-operator; do \
         if readelf -l "$b" | grep 'Requesting program interpreter' >/dev/null; then \
           echo "$b is dynamically linked" >&2; exit 1; \
         fi; \
       done

# ---------------------------------------------------------------------------------------------
# runtime: what both final images share.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.vendor="Tradeplane" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/tradeplane/tradeplane" \
      org.opencontainers.image.url="https://github.com/tradeplane/tradeplane" \
      org.opencontainers.image.documentation="https://github.com/tradeplane/tradeplane#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
ENV PATH=/usr/local/bin \
    LOG_FORMAT=json

# ---------------------------------------------------------------------------------------------
# operator image: `tradeplane-operator run`, health and metrics on 8081.
FROM runtime AS operator
LABEL org.opencontainers.image.title="tradeplane-operator" \
      org.opencontainers.image.description="Kubernetes operator that reconciles TradingPlatform resources"
COPY --from=builder --chown=0:0 --chmod=0555 /out/tradeplane-operator /usr/local/bin/tradeplane-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/tradeplane-operator"]
CMD ["run"]

# ---------------------------------------------------------------------------------------------
# platform image (the default target, last in the file): API, health and metrics on 8080.
# The working directory /data is writable by the runtime user so the default SQLite database
# works with a plain `docker run`; in Kubernetes the operator sets DATABASE_URL instead.
FROM runtime AS platform
LABEL org.opencontainers.image.title="tradeplane-platform" \
      org.opencontainers.image.description="Tradeplane trading service: API, matching, health and metrics"
COPY --from=builder --chown=0:0 --chmod=0555 /out/tradeplane-platform /usr/local/bin/tradeplane-platform
COPY --from=builder --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tradeplane-platform"]
