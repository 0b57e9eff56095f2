# rancon container image: a static-enough glibc binary (rustls with ring, no OpenSSL) on
# distroless, running as a non-root user.
#   docker build -t rancon .
#   docker run --rm -e RANCHER_URL=... -e CONSUL_HTTP_ADDR=... rancon
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in hot_paths rancher_list e2e; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked --bin rancon || true
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin rancon

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/rancon /usr/local/bin/rancon
USER nonroot:nonroot
EXPOSE 9090
# Health: GET /health on the [http] endpoint (enable it with RANCON_HTTP__ENABLED=true).
ENTRYPOINT ["/usr/local/bin/rancon"]
