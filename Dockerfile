# Build stage: compile the release binary.
FROM rust:1.95-slim-bookworm AS build
# jemalloc, the server's allocator, is compiled from C with make.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY static ./static
# The example files whose sample secrets production refuses (compiled into the binary).
COPY .env.example README.md compose.yaml ./
COPY docs/OPERATIONS.md ./docs/
RUN cargo build --release --locked --bin backflow

# Runtime stage: a small image with only the binary, run as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app --create-home backflow \
    && mkdir /app/data && chown backflow /app/data
WORKDIR /app
COPY --from=build /src/target/release/backflow /usr/local/bin/backflow
USER backflow
# Production refuses to start without JWT_SECRET and AUTH_USERS: pass them with `-e` (README).
ENV HOST=0.0.0.0 PORT=3000 APP_ENV=production LOG_FORMAT=json DATA_DIR=/app/data
# The embedded store's file: a named volume here starts owned by the server's user.
VOLUME /app/data
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["backflow", "healthcheck"]
ENTRYPOINT ["backflow"]
