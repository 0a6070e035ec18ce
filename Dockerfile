# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a small Debian image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY rules ./rules
COPY migrations ./migrations
RUN cargo build --release --locked && strip target/release/prodaudit

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/prodaudit --create-home prodaudit
COPY --from=build /src/target/release/prodaudit /usr/local/bin/prodaudit
USER 10001
WORKDIR /var/lib/prodaudit
ENV PORT=3000 DATABASE_URL=sqlite:///var/lib/prodaudit/prodaudit.db LOG_FORMAT=json
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:3000/healthz"]
ENTRYPOINT ["/usr/local/bin/prodaudit"]
CMD ["serve"]
