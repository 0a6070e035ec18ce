# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a small Debian image as a non-root user (the GitHub
# Action alone keeps root: see the entrypoint below).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY rules ./rules
COPY migrations ./migrations
RUN cargo build --release --locked && strip target/release/prodaudit

# prodaudit: ignore[I4] starts as root for the GitHub Action only; the entrypoint drops every other command to uid 10001
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/prodaudit --create-home prodaudit
COPY --from=build /src/target/release/prodaudit /usr/local/bin/prodaudit
# One image, two uses. GitHub runs a Docker action as the image's user and gives only root write access to the
# workspace and the step's command files, so the image starts as root; every command but `action` (the GitHub
# Action) drops at once to the unprivileged user 10001 (setpriv, from util-linux). Started as 10001 (Kubernetes
# `runAsUser`, `docker run --user`), it runs as that user directly.
COPY --chmod=0755 <<'SCRIPT' /usr/local/bin/prodaudit-entrypoint
#!/bin/sh
set -eu
if [ "$(id -u)" = 0 ] && [ "${1:-}" != action ]; then
  exec setpriv --reuid=10001 --regid=10001 --clear-groups -- /usr/local/bin/prodaudit "$@"
fi
exec /usr/local/bin/prodaudit "$@"
SCRIPT
WORKDIR /var/lib/prodaudit
ENV PORT=3000 DATABASE_URL=sqlite:///var/lib/prodaudit/prodaudit.db LOG_FORMAT=json
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:3000/healthz"]
ENTRYPOINT ["/usr/local/bin/prodaudit-entrypoint"]
CMD ["serve"]
