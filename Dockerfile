# docker-nat-exporter container image. Documentation: docs/deploy.md.
#
#   docker build -t docker-nat-exporter:latest .
#   docker run -d --name docker-nat-exporter --network host --pid host \
#     --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_CHROOT \
#     -v /var/run/docker.sock:/var/run/docker.sock:ro -v /:/host:ro,rslave \
#     --read-only docker-nat-exporter:latest
#
# Build args: VERSION, REVISION, CREATED (labels), PROJECT_URL (the project's home, for the
# source and documentation labels), EXTRA_PACKAGES, BUILD_CA_CERTS, BASE_IMAGE.
#
# Base image: the tag is used as is. For a reproducible build pin it by digest, e.g.
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest> .
# (the digest of the tag you tested: `docker buildx imagetools inspect debian:bookworm-slim`,
# or `docker image inspect -f '{{index .RepoDigests 0}}' debian:bookworm-slim` after a pull).
ARG BASE_IMAGE=debian:bookworm-slim

# ---- builder: build the wheel, install it and its dependencies into a venv under /opt
FROM ${BASE_IMAGE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# PEM certificates to trust while pip downloads (a TLS-intercepting proxy); they stay in this
# build stage and never reach the final image.
ARG BUILD_CA_CERTS=""
RUN if [ -n "$BUILD_CA_CERTS" ]; then \
      printf '%s\n' "$BUILD_CA_CERTS" >> /etc/ssl/certs/ca-certificates.crt; fi \
 && python3 -m venv /opt/docker-nat-exporter
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN /opt/docker-nat-exporter/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/docker-nat-exporter/bin/pip install /wheels/docker_nat_exporter-*.whl \
 && /opt/docker-nat-exporter/bin/pip uninstall -y pip setuptools \
 && /opt/docker-nat-exporter/bin/docker-nat-exporter --version

# ---- final image: the tools the exporter runs, Python, and the venv from the builder
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=""
ARG CREATED=""
# Extra Debian packages, e.g. EXTRA_PACKAGES=rpm to read BerkeleyDB rpm databases (RHEL 8,
# CentOS 7 hosts); RHEL 9, Fedora and dpkg/apk/pacman hosts need nothing extra.
ARG EXTRA_PACKAGES=""
# The project's home, for the source and documentation labels (a fork passes its own; the same
# base as `docker-nat-exporter alerts --base-url` and exporter/project.py).
ARG PROJECT_URL=https://github.com/docker-nat-exporter/docker-nat-exporter
LABEL org.opencontainers.image.title="docker-nat-exporter" \
      org.opencontainers.image.description="Prometheus exporter that checks every published Docker port against the NAT/filter rules the kernel holds" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.url="${PROJECT_URL}" \
      org.opencontainers.image.source="${PROJECT_URL}" \
      org.opencontainers.image.documentation="${PROJECT_URL}/blob/main/docs/deploy.md" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# iptables: iptables-nft-save and iptables-legacy-save (both families); nftables: `nft monitor`;
# iproute2: `ip -j addr`. The image's own iptables only reads rules: the host's build is
# reported from the host root mounted at /host.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables iproute2 python3 ${EXTRA_PACKAGES} \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old \
           /var/log/apt /var/log/dpkg.log /var/log/alternatives.log
COPY --from=builder /opt/docker-nat-exporter /opt/docker-nat-exporter
COPY deploy/container/healthcheck.py /opt/docker-nat-exporter/healthcheck.py
ENV PATH=/opt/docker-nat-exporter/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOCKER_NAT_EXPORTER_HOST_ROOT=/host
# Root, on purpose: reading netfilter needs CAP_NET_ADMIN (+ CAP_NET_RAW for the legacy backend)
# in the host's network namespace, which a non-root user cannot hold across exec without file
# capabilities. Run with `--cap-drop ALL --cap-add NET_ADMIN --cap-add NET_RAW
# --cap-add SYS_CHROOT --read-only`: root with nothing else (docs/deploy.md).
USER root
EXPOSE 9841
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/opt/docker-nat-exporter/bin/python3", "/opt/docker-nat-exporter/healthcheck.py"]
ENTRYPOINT ["docker-nat-exporter"]
CMD ["serve"]
