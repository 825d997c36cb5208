#!/usr/bin/env bash
# Docker smoke test: build the hub, edge and nginx images, bring the compose stack up,
# serve a personalized page through the nginx container, tear everything down.
# With --cluster it runs the compose file's cluster profile instead: two hubs sharing a
# PostgreSQL database, events through nginx stored once and seen by both hubs, one job
# leader. PostgreSQL is Debian's package in an image made here (registry images cannot
# be pulled in every build environment), started as the official image's variables say.
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
cluster=""
[ "${1:-}" = "--cluster" ] && cluster=1

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
"$python" -m pip wheel --quiet --wheel-dir wheelhouse ".[edge,hub,postgres]" hatchling

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
profile=()
if [ -n "$cluster" ]; then
  # PostgreSQL from Debian's package, honouring POSTGRES_USER/POSTGRES_DB/POSTGRES_PASSWORD
  mkdir -p "$work/pg"
  cat > "$work/pg/entrypoint.sh" <<'SH'
set -e
bin="$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
data=/var/lib/postgresql/data
mkdir -p "$data" && chown -R postgres:postgres "$data" && chmod 0700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  printf '%s' "$POSTGRES_PASSWORD" > /tmp/pw && chown postgres /tmp/pw
  runuser -u postgres -- "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pw --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  rm /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
  runuser -u postgres -- "$bin/psql" -U "$POSTGRES_USER" -d postgres -q -c "CREATE DATABASE \"$POSTGRES_DB\""
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -w stop >/dev/null
fi
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*'
SH
  printf 'FROM %s\nRUN apt-get update -q && apt-get install -y -q --no-install-recommends postgresql && rm -rf /var/lib/apt/lists/*\nCOPY entrypoint.sh /entrypoint.sh\nCMD ["/bin/sh", "/entrypoint.sh"]\n' "$base" > "$work/pg/Dockerfile"
  docker build --quiet -t p13n-postgres-smoke "$work/pg" >/dev/null
  export P13N_POSTGRES_IMAGE=p13n-postgres-smoke P13N_DB_PASSWORD="$(openssl rand -hex 16)"
  export P13N_HUB_DATABASE_URL="postgresql://p13n_hub:$P13N_DB_PASSWORD@postgres:5432/p13n"
  profile=(--profile cluster)
fi
docker-compose -p "$project" "${profile[@]}" build --quiet
docker-compose -p "$project" "${profile[@]}" up -d

# 5. a personalized page through the nginx container, and the hub
mobile="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
ok=""
for _ in $(seq 90); do
  if curl -fsS -A "$mobile" http://127.0.0.1:8080/ 2>/dev/null | grep -q 'data-variant="mobile-app"'; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || { docker-compose -p "$project" logs --tail 40; echo "docker-smoke: no personalized page" >&2; exit 1; }
desktop="$(curl -fsS --retry 5 --retry-all-errors http://127.0.0.1:8080/)"
echo "$desktop" | grep -q 'data-variant="mobile-app"' && { echo "docker-smoke: desktop got the mobile hero" >&2; exit 1; }
for _ in $(seq 60); do  # with the cluster profile a hub restarts until PostgreSQL is up
  health="$(curl -fsS http://127.0.0.1:8600/v1/healthz 2>/dev/null || true)"
  echo "$health" | grep -q '"status":"ok"' && break
  sleep 1
done
echo "$health" | grep -q '"status":"ok"' || { echo "docker-smoke: hub not healthy: $health" >&2; exit 1; }
for _ in $(seq 30); do  # the edge's first heartbeat (the hub may have started after it)
  edges="$(curl -fsS -H "Authorization: Bearer $(cat secrets/admin.token)" http://127.0.0.1:8600/v1/edges || true)"
  echo "$edges" | grep -q '"edge_id":"edge-1"' && break
  sleep 1
done
echo "$edges" | grep -q '"edge_id":"edge-1"' || { echo "docker-smoke: the edge did not reach the hub: $edges" >&2; exit 1; }
users="$(docker-compose -p "$project" exec -T hub id -u)"
[ "$users" = "10001" ] || { echo "docker-smoke: the hub runs as uid $users" >&2; exit 1; }
if [ -n "$cluster" ]; then
  # events through nginx, stored once in PostgreSQL, seen alike by both hubs; one job leader
  token="$(cat secrets/admin.token)"
  for _ in $(seq 60); do curl -fs -o /dev/null http://127.0.0.1:8601/v1/healthz && break; sleep 1; done
  for i in $(seq 20); do
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
      -H "Cookie: p13n_id=visitorDockerSmoke$(printf %06d "$i"); p13n_consent=necessary.analytics.personalization" \
      --data "{\"events\":[{\"event_id\":\"$(openssl rand -hex 16)\",\"type\":\"page_view\",\"url\":\"https://shop.example/p/dr01\"}]}" \
      --retry 5 --retry-all-errors http://127.0.0.1:8080/_p13n/collect
  done
  accepted() { curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$1/v1/stats" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["accepted"])'; }
  for _ in $(seq 60); do [ "$(accepted 8600 2>/dev/null || echo 0)" -ge 20 ] && break; sleep 1; done
  a="$(accepted 8600 || true)" b="$(accepted 8601 || true)"
  [ "$a" = 20 ] && [ "$b" = 20 ] || { docker-compose -p "$project" "${profile[@]}" logs --tail 60 hub hub-2 postgres; echo "docker-smoke: hubs saw $a and $b events, not 20 each" >&2; exit 1; }
  leaders=0
  for port in 8600 8601; do
    held="$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/jobs" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["lease"]["held"])')"
    [ "$held" = True ] && leaders=$((leaders + 1))
  done
  [ "$leaders" = 1 ] || { echo "docker-smoke: $leaders hubs hold the job lease" >&2; exit 1; }
  echo "docker-smoke: ok in $((SECONDS - started)) s (cluster: two hubs on PostgreSQL, 20 events stored once and seen by both, one job leader)"
  exit 0
fi
echo "docker-smoke: ok in $((SECONDS - started)) s (personalized page through nginx, hub healthy, edge registered, non-root)"
