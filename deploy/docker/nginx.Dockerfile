# deploy/docker/nginx.Dockerfile — the load balancer image of docker-compose.yml's "lb" profile:
# Debian's nginx on the same base as the server image (so it builds without a registry too), run
# as an unprivileged user with deploy/nginx.conf mounted at /etc/claq/nginx.conf and its pid and
# temporary files under /tmp/nginx (a tmpfs: the root file system stays read-only).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/log/nginx/* \
 && groupadd --system --gid 10002 claq-lb \
 && useradd --system --uid 10002 --gid claq-lb --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin claq-lb
USER 10002:10002
STOPSIGNAL SIGQUIT
CMD ["sh", "-c", "mkdir -p /tmp/nginx/tmp && exec nginx -p /tmp/nginx -c /etc/claq/nginx.conf -e stderr -g 'daemon off;'"]
