# Switchyard container image: a build stage that compiles the single binary from source, and a
# runtime stage that holds only that binary on a distroless base (glibc, no shell, no package
# manager), running as a non-root user with nothing to write: fit for a read-only root filesystem.
#
#   docker build -t switchyard .
#   docker run --rm -p 8000:8000 -p 8081:8081 -v ./switchyard.yaml:/etc/switchyard/switchyard.yaml:ro switchyard
#
# BUILD_IMAGE needs Bun (and the npm registry, for `bun install`); BASE_IMAGE needs only glibc,
# which the binary links (ldd: libc, libm, libpthread, libdl). Override both where those
# registries are out of reach, e.g. with images built from the host (see test/containers.slow.test.ts).
ARG BUILD_IMAGE=docker.io/oven/bun:1.4.5
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies first, so that a source change does not re-run the install. Exec form: the
# build image needs no shell.
COPY package.json bun.lock ./
RUN ["bun", "install", "--frozen-lockfile", "--production"]
COPY tsconfig.json build.ts ./
COPY examples ./examples
COPY sim ./sim
COPY src ./src
RUN ["bun", "build.ts", "--outfile", "/out/switchyard"]

FROM ${BASE_IMAGE}
COPY --from=build /out/switchyard /usr/local/bin/switchyard
# Bun caches DNS answers for 30 s. Containers come back on new addresses when they restart, and
# a backend found by name should be dialled at its new address by the next health check.
ENV BUN_CONFIG_DNS_TIME_TO_LIVE_SECONDS=1
# distroless's "nonroot" user, by number, so that a base without /etc/passwd works the same.
USER 65532:65532
# The proxy port and the admin port (dashboard, /stats, /metrics, /healthz, /readyz); the config
# must put the admin port on 0.0.0.0 for it to be reachable from outside the container.
EXPOSE 8000 8081
# The binary asks its own admin port (http://127.0.0.1:8081/healthz; the environment variable
# SWITCHYARD_HEALTH_URL changes it): no curl or shell in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/switchyard", "health"]
# Exec form: switchyard is PID 1. As PID 1, `serve` becomes the keeper (src/control/keeper.ts):
# it runs the serving process as its child, passes it SIGTERM (docker stop: it stops accepting,
# lets in-flight requests finish within timeouts.shutdownGrace and exits 0) and SIGUSR2 (an
# upgrade in place, `docker kill --signal USR2`), follows each new generation, and stays, so
# the container does, until the last one exits. A new image is still a rolling replace (README,
# "Upgrading the binary").
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard/switchyard.yaml"]
