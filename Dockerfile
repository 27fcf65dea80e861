# Starling broker image: `FROM scratch` around a statically linked binary.
#
# There is no registry here, so no multi-stage build (no Rust base image to
# pull): build the static binary on the host first, then the image.
# From the repository root:
#
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --locked --target x86_64-unknown-linux-gnu \
#       -p starling-broker --bin starling
#   docker build -t starling:0.1.0 .
#
# (`--target` is required: with it, RUSTFLAGS reach only the target build,
# not build scripts and proc macros, which must stay dynamically linked.)
# The image holds only the binary: no shell, no libc, no CA bundle. Name
# resolution works from the static glibc (its built-in `files` and `dns`
# sources read the /etc/hosts and /etc/resolv.conf that Kubernetes and
# Docker mount into every container). See docs/deploy.md.
#
# No BuildKit-only syntax: the classic builder (Docker 20.10 here) builds it
# as well as BuildKit.
FROM scratch

# Path of the static binary in the build context (.dockerignore lets only
# this path through; update both together).
ARG STARLING_BIN=target/x86_64-unknown-linux-gnu/release/starling

COPY ${STARLING_BIN} /usr/local/bin/starling

# Lets `kubectl exec POD -- starling cluster ... status` find the binary.
# No STARLING_* variables here: they would override the Helm chart's
# configuration file.
ENV PATH=/usr/local/bin

# Durable state (Raft log, snapshots). Mount a volume writable by UID 65532
# here; the Helm chart mounts a PersistentVolumeClaim with fsGroup 65532.
WORKDIR /var/lib/starling

# Non-root, numeric (there is no /etc/passwd), the same as the chart's
# runAsUser / runAsGroup.
USER 65532:65532

# MQTT, MQTT over TLS, WebSocket, secure WebSocket, peer links, admin HTTP
# (/livez, /readyz, /metrics, /api/v1). Which of them listen depends on the
# configuration.
EXPOSE 1883 8883 8080 8884 7946 9100

ENTRYPOINT ["/usr/local/bin/starling"]
# A single node reachable from outside the container. It refuses every
# client until it gets a policy (`--policy FILE`, see docs/deploy.md); the
# Helm chart replaces these arguments with `serve --config <per-pod file>`.
CMD ["serve", "--listen", "0.0.0.0:1883", "--admin-listen", "0.0.0.0:9100", "--data-dir", "/var/lib/starling"]
