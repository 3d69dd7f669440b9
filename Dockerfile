# syntax=docker/dockerfile:1
#
# invalidator image: a statically linked Swift binary on Debian bookworm-slim
# with the C libraries it loads at run time (librdkafka, hiredis, OpenSSL).
#
#   docker build -t registry.example.com/platform/invalidator:0.1.0 .
#   docker build --build-arg SWIFT_VERSION=6.1 ...   # another Swift 6.x toolchain
#
# The image runs as UID 65532, writes nothing to disk (a read-only root
# filesystem works) and serves /metrics, /healthz and /readyz on 9090.

# The toolchain the tests run on; swift:6.3.x-bookworm images are published.
ARG SWIFT_VERSION=6.3

# ---- build ------------------------------------------------------------------
FROM swift:${SWIFT_VERSION}-bookworm AS build

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
        librdkafka-dev \
        libhiredis-dev \
        libssl-dev \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependencies first, so source edits reuse this layer.
COPY Package.swift ./
RUN swift package resolve

COPY Sources ./Sources
COPY Tests ./Tests
# The Swift runtime and Foundation are linked in, and so is BoringSSL (through
# swift-nio-ssl, for webhooks; its symbols are prefixed, so it does not clash with
# OpenSSL); librdkafka, hiredis and OpenSSL (for Redis TLS) stay shared and come
# from the runtime stage's Debian packages.
RUN swift build -c release --product invalidator --static-swift-stdlib \
    && mkdir -p /staging \
    && cp "$(swift build -c release --show-bin-path)/invalidator" /staging/invalidator

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
        librdkafka1 \
        libhiredis0.14 \
        libssl3 \
        ca-certificates \
        tzdata \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /staging/invalidator /usr/local/bin/invalidator

LABEL org.opencontainers.image.title="invalidator" \
      org.opencontainers.image.description="Event-driven cache invalidation worker: change events from Kafka or Redis in, precise Redis deletions out."

# Where `run` looks for its config when --config is not given; the
# Kubernetes manifests mount the ConfigMap there.
ENV INVALIDATOR_CONFIG=/etc/invalidator/invalidator.yaml

USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["invalidator"]
CMD ["run"]
