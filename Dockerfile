# syntax=docker/dockerfile:1

# Build stage. cgo stays on for github.com/mattn/go-sqlite3, so the builder
# is the same Debian release as the runtime stage (bookworm): the binary
# then links against the glibc it runs with. GOTOOLCHAIN pins the Go release
# the module's toolchain line names; the image's go fetches it if older.
FROM golang:1.26-bookworm AS build
ENV GOTOOLCHAIN=go1.26.10 GOPROXY=https://proxy.golang.org CGO_ENABLED=1
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ordertrail .

# Runtime stage: glibc, CA certificates for esdb:// with TLS, and busybox
# only for the health check's wget (about 1 MB; curl would pull in far more).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ordertrail \
 && useradd --system --uid 10001 --gid ordertrail --home-dir /data --shell /usr/sbin/nologin ordertrail \
 && mkdir /data && chown ordertrail:ordertrail /data
COPY --from=build /out/ordertrail /usr/local/bin/ordertrail
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/ordertrail"]
CMD ["serve", "--addr", "0.0.0.0:8080", "--data", "/data"]
