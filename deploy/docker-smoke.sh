#!/usr/bin/env bash
# Docker smoke test: build the hub, edge and nginx images, bring the compose stack up,
# serve a personalized page through the nginx container, tear everything down.
#
# Works without registry images: the base image is made from Debian's packages with
# debootstrap (needs root) and Python dependencies come from a wheelhouse built on this
# host. Needs docker (dockerd running), docker-compose and debootstrap:
#   apt-get install docker.io docker-compose debootstrap && dockerd &
#   deploy/docker-smoke.sh
# Runs in a copy of this checkout (its own secrets/, wheelhouse/), binds 127.0.0.1 only,
# and removes its containers and volumes at the end, also on failure.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
p13n="$(dirname "$python")/p13n"
base="${P13N_BASE_IMAGE:-p13n-base:bookworm}"
project="p13nsmoke"
started=$SECONDS

command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "docker-smoke: docker is not running" >&2; exit 2; }
command -v docker-compose >/dev/null || { echo "docker-smoke: docker-compose missing" >&2; exit 2; }

# 1. a base image from Debian's packages (once)
if ! docker image inspect "$base" >/dev/null 2>&1; then
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}')"
  [ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | head -1 | awk '{print $2}')"
  rootfs="$(mktemp -d)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
fi

# 2. a copy of the checkout with a wheelhouse for offline installs in the images
work="$(mktemp -d)"
cleanup() {
  (cd "$work/src" 2>/dev/null && docker-compose -p "$project" down -v --remove-orphans >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/src"
tar -C "$here" --exclude=.venv --exclude=.git --exclude=wheelhouse --exclude=secrets --exclude=data --exclude=.p13n-demo -c . | tar -C "$work/src" -x
cd "$work/src"
"$python" -m pip wheel --quiet --wheel-dir wheelhouse ".[edge,hub]" hatchling

# 3. secrets, as the compose file's header says
umask 077
mkdir -p secrets
export P13N_NATS_HUB_PASSWORD="$(openssl rand -hex 24)" P13N_NATS_EDGE1_PASSWORD="$(openssl rand -hex 24)"
export P13N_HUB_AUDIT_KEY="$(openssl rand -hex 32)" P13N_PSEUDONYM_KEY="$(openssl rand -hex 32)"
"$p13n" nats-config --listen 0.0.0.0:4222 --store-dir /data/nats --hub-password "$P13N_NATS_HUB_PASSWORD" \
  --edge "edge-1:$P13N_NATS_EDGE1_PASSWORD" > secrets/nats.conf
P13N_HUB_DATA_DIR="$work/unused" "$p13n" tokens create --file secrets/hub-tokens.json --name ops --role admin > secrets/admin.token 2>/dev/null
"$p13n" keys pii --id k1 > secrets/pii-keys
chown -R 10001 secrets

# 4. build and start
export P13N_BASE_IMAGE="$base" P13N_PIP_ARGS="--no-index --find-links /src/wheelhouse"
docker-compose -p "$project" build --quiet
docker-compose -p "$project" up -d

# 5. a personalized page through the nginx container, and the hub
mobile="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
ok=""
for _ in $(seq 90); do
  if curl -fsS -A "$mobile" http://127.0.0.1:8080/ 2>/dev/null | grep -q 'data-variant="mobile-app"'; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || { docker-compose -p "$project" logs --tail 40; echo "docker-smoke: no personalized page" >&2; exit 1; }
desktop="$(curl -fsS http://127.0.0.1:8080/)"
echo "$desktop" | grep -q 'data-variant="mobile-app"' && { echo "docker-smoke: desktop got the mobile hero" >&2; exit 1; }
health="$(curl -fsS http://127.0.0.1:8600/v1/healthz)"
echo "$health" | grep -q '"status":"ok"' || { echo "docker-smoke: hub not healthy: $health" >&2; exit 1; }
edges="$(curl -fsS -H "Authorization: Bearer $(cat secrets/admin.token)" http://127.0.0.1:8600/v1/edges)"
echo "$edges" | grep -q '"edge_id":"edge-1"' || { echo "docker-smoke: the edge did not reach the hub: $edges" >&2; exit 1; }
users="$(docker-compose -p "$project" exec -T hub id -u)"
[ "$users" = "10001" ] || { echo "docker-smoke: the hub runs as uid $users" >&2; exit 1; }
echo "docker-smoke: ok in $((SECONDS - started)) s (personalized page through nginx, hub healthy, edge registered, non-root)"
