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
# The health and metrics endpoint; setting http.listen turns it on.
ENV RANCON_HTTP__LISTEN=0.0.0.0:9090
EXPOSE 9090
# No shell or curl in distroless: the binary asks its own /health.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s CMD ["/usr/local/bin/rancon", "health"]
# The non-root user may write only where a volume is mounted: mount the Traefik file's
# directory (traefik_file.path) writable when that backend is used.
ENTRYPOINT ["/usr/local/bin/rancon"]
