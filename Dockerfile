# Images for each role, built from one file:
#   docker build --target edge  -t p13n-edge .    # the agent (p13n[edge])
#   docker build --target hub   -t p13n-hub  .    # the hub and nats-server (p13n[hub,postgres])
#   docker build --target nginx -t p13n-nginx .   # nginx for the edge node (config mounted)
# BASE: any Debian-based image with python3 (a slim Python image by default; the
# smoke test uses one made with debootstrap). PIP_ARGS: e.g. "--no-index --find-links
# /src/wheelhouse" to install from a wheelhouse in the build context, offline.
# No keys, tokens or data are baked in: they come from the environment and secrets.
ARG BASE=python:3.11-slim

FROM ${BASE} AS runtime
RUN groupadd --system --gid 10001 p13n && useradd --system --uid 10001 --gid p13n --home-dir /data --shell /usr/sbin/nologin p13n \
    && mkdir -p /data && chown p13n:p13n /data && chmod 0700 /data
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/p13n/bin:$PATH

# each role's virtual environment is made where it will live (scripts name their python)
FROM runtime AS build-edge
ARG PIP_ARGS=""
COPY . /src
RUN python3 -m venv /opt/p13n && /opt/p13n/bin/pip install $PIP_ARGS "/src[edge]"

FROM runtime AS build-hub
ARG PIP_ARGS=""
COPY . /src
RUN python3 -m venv /opt/p13n && /opt/p13n/bin/pip install $PIP_ARGS "/src[hub,postgres]"

FROM runtime AS edge
COPY --from=build-edge /opt/p13n /opt/p13n
COPY --from=build-edge /src/templates /app/templates
ENV P13N_EDGE_TEMPLATES_DIR=/app/templates P13N_EDGE_DATA_DIR=/data/edge
USER p13n
WORKDIR /data
EXPOSE 8700
CMD ["p13n", "edge", "serve"]

FROM runtime AS hub
COPY --from=build-hub /opt/p13n /opt/p13n
ENV P13N_HUB_DATA_DIR=/data/hub
USER p13n
WORKDIR /data
EXPOSE 8600 4222
CMD ["p13n", "hub", "serve"]

FROM runtime AS nginx
RUN apt-get update -q && apt-get install -y -q --no-install-recommends nginx && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/nginx/sites-enabled/default && install -d -o www-data -m 0700 /var/cache/nginx/p13n \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
