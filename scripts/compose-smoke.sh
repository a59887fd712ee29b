#!/usr/bin/env bash
# The deployment check: the compose stack run for real on a Docker engine, as root.
#   sudo bash scripts/compose-smoke.sh
# Installs Debian's docker.io and docker-compose when missing and starts dockerd when none
# answers (stopped again at the end). Base images come from the registry; where it cannot be
# reached, stand-ins are built from Debian packages (debootstrap) under the same names.
# Trains a tiny model into models/compose-smoke, builds the API image, `compose up`, waits
# for healthy, recommends, interacts (with the API key), trains a second version and
# reloads, SIGKILLs the api and redis containers, brings them back, checks the interaction
# is still applied, and runs `compose down -v`. Prints the time of each step.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
cd "$REPO"

if [ "$(id -u)" != 0 ]; then
  echo "run as root (sudo bash $0): it may install docker.io, start dockerd and debootstrap" >&2
  exit 1
fi

PROJECT="promptmm-smoke"
NAME="compose-smoke"
MODELS_ROOT="$REPO/models/$NAME"
DEBIAN_SUITE="bookworm"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
STAND_IN_NOTE="promptmm stand-in 2: Debian $DEBIAN_SUITE minbase (debootstrap); the registry was unreachable"
WORK="$(mktemp -d)"
STARTED_DOCKERD=""
COMPOSE_CLI=()
STACK_UP=""
START="$(date +%s.%N)"
LAST="$START"
TIMINGS=""

say() { echo "==> $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
mark() {
  local now
  now="$(date +%s.%N)"
  TIMINGS+="$(awk -v step="$1" -v a="$now" -v b="$LAST" 'BEGIN { printf "| %s | %.1f |", step, a - b }')"$'\n'
  LAST="$now"
}

compose() {
  env -i PATH="$PATH" HOME="$WORK" ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
    PROMPTMM_API_KEY="$API_KEY" PROMPTMM_BUNDLE_PATH="/models/$NAME" HOST_PORT="$PORT" \
    "${COMPOSE_CLI[@]}" --env-file "$WORK/empty.env" -p "$PROJECT" "$@"
}

cleanup() {
  local status=$?
  if [ "$status" != 0 ] && [ -n "$TIMINGS" ]; then
    printf 'seconds per step until the failure:\n%s' "$TIMINGS" >&2
  fi
  if [ -n "$STACK_UP" ]; then
    if [ "$status" != 0 ]; then compose logs --no-color --tail 40 || true; fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    wait "$STARTED_DOCKERD" 2>/dev/null || true
  fi
  rm -rf "$WORK" "$MODELS_ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
  say "installing $*"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" \
    >/dev/null
}

# A docker CLI that builds with BuildKit, which builds only the stages the API needs (the
# legacy builder would also build the trainer stage, CUDA torch included): one with the
# buildx plugin, or a client older than 23 (BuildKit built in, e.g. Debian's docker.io).
buildkit_docker() {
  local cli major
  for cli in docker /usr/bin/docker; do
    command -v "$cli" >/dev/null || continue
    if "$cli" buildx version >/dev/null 2>&1; then echo "$cli"; return 0; fi
    major="$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)"
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then echo "$cli"; return 0; fi
  done
  return 1
}

# Every image in $@ is tagged from one Debian root filesystem: python3 (3.11, with venv),
# redis-server (7) and the CA certificates this machine trusts (an egress proxy may re-sign
# TLS, and pip inside the build must reach PyPI). The redis stand-in starts redis-server with
# protected mode off, as the official image's build does (other containers must connect).
build_stand_ins() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  say "the registry is unreachable: building stand-ins for $* from Debian $DEBIAN_SUITE packages"
  local root="$WORK/rootfs" image
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,redis-server,ca-certificates \
    "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  cat >"$root/usr/local/bin/redis-entrypoint" <<'SH'
#!/bin/sh
if [ "$1" = redis-server ]; then shift; exec redis-server --protected-mode no "$@"; fi
exec "$@"
SH
  chmod 755 "$root/usr/local/bin/redis-entrypoint"
  for image in "$@"; do
    local changes=(--change 'CMD ["python3"]')
    case "$image" in
      redis*) changes=(--change 'ENTRYPOINT ["redis-entrypoint"]' --change 'WORKDIR /data'
        --change 'CMD ["redis-server"]') ;;
    esac
    tar -C "$root" -c . | docker import --message "$STAND_IN_NOTE" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      "${changes[@]}" - "$image" >/dev/null
    say "tagged the stand-in as $image"
  done
}

train_version() {
  nice -n 10 env OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 "$PY" -m training run \
    configs/synthetic.toml --set "data.path=$WORK/$NAME" --set "run.models_dir=$REPO/models" \
    --set "run.runs_dir=$WORK/runs" --set stage1.max_epochs=2 --set stage2.max_epochs=2 \
    --set 'run.device="cpu"' --set run.progress=false >"$WORK/train.log" 2>&1 \
    || { tail -20 "$WORK/train.log" >&2; fail "training failed"; }
  cat "$MODELS_ROOT/LATEST"
}

# POST $1 with body $2 (and the API key when $3 is "key"): prints the answer's body; fails
# unless the status is $4 (default 200).
post() {
  local path="$1" body="$2" auth="${3:-}" expected="${4:-200}" code
  local headers=(-H 'Content-Type: application/json')
  [ "$auth" = key ] && headers+=(-H "X-API-Key: $API_KEY")
  code="$(curl -sS -o "$WORK/answer.json" -w '%{http_code}' -X POST "http://127.0.0.1:$PORT$path" \
    "${headers[@]}" -d "$body")"
  [ "$code" = "$expected" ] || fail "POST $path: HTTP $code, expected $expected: $(cat "$WORK/answer.json")"
  cat "$WORK/answer.json"
}

field() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
item_ids() { "$PY" -c 'import json, sys; print(" ".join(i["item_id"] for i in json.load(sys.stdin)["items"]))'; }

# Every unseen item of the user, best first, and the model version that ranked them.
recommend_all() {
  local answer
  answer="$(post /recommend "{\"user_id\": \"$USER_ID\", \"k\": $N_ITEMS}")"
  SERVED_VERSION="$(field model_version <<<"$answer")"
  RANKED=" $(item_ids <<<"$answer") "
}

wait_healthy() {
  local id status="" deadline=$((SECONDS + 150))
  while [ "$SECONDS" -lt "$deadline" ]; do
    id="$(compose ps -q api)"
    status="$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null || true)"
    [ "$status" = healthy ] && return 0
    sleep 1
  done
  fail "the api container is not healthy after 150 s (health: ${status:-none})"
}

say "Docker engine and Compose"
command -v dockerd >/dev/null || apt_install docker.io
if docker compose version >/dev/null 2>&1; then
  COMPOSE_CLI=(docker compose)
else
  command -v docker-compose >/dev/null || apt_install docker-compose
  COMPOSE_CLI=(docker-compose)
fi
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (stopped on exit)"
  dockerd >"$WORK/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$STARTED_DOCKERD" 2>/dev/null || { tail -20 "$WORK/dockerd.log"; fail "dockerd exited"; }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || fail "dockerd does not answer after 60 s"
fi
BUILD_DOCKER="$(buildkit_docker)" || fail "no docker CLI builds with BuildKit here: install the buildx plugin"
say "compose: ${COMPOSE_CLI[*]} ($("${COMPOSE_CLI[@]}" version --short 2>/dev/null || true)); build: $BUILD_DOCKER"
mark "engine ready (install / start dockerd)"

PYTHON_IMAGE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"
REDIS_IMAGE="$(awk '$1 == "image:" && $2 ~ /^redis/ { print $2; exit }' docker-compose.yml)"
API_IMAGE="$(awk '$1 == "image:" && $2 ~ /^promptmm-api/ { print $2; exit }' docker-compose.yml)"
[ -n "$PYTHON_IMAGE" ] && [ -n "$REDIS_IMAGE" ] && [ -n "$API_IMAGE" ] \
  || fail "could not read the image names from Dockerfile and docker-compose.yml"
unreachable=()
for image in "$PYTHON_IMAGE" "$REDIS_IMAGE"; do
  note=absent
  docker image inspect "$image" >/dev/null 2>&1 && note="$(docker image inspect -f '{{.Comment}}' "$image")"
  if [ "$note" = "$STAND_IN_NOTE" ]; then
    say "$image is the stand-in an earlier run built from Debian packages"
  elif [ "$note" = absent ] || [[ "$note" == "promptmm stand-in"* ]]; then
    docker pull -q "$image" >/dev/null 2>&1 || unreachable+=("$image")
  fi
done
[ "${#unreachable[@]}" = 0 ] || build_stand_ins "${unreachable[@]}"
mark "base images (pull or debootstrap stand-ins)"

say "training a tiny model into models/$NAME"
setup_env "service,training"
rm -rf "$MODELS_ROOT"
"$PY" -m training data synth "$WORK/$NAME" --users 300 --items 200 --seed 0 >"$WORK/synth.log" 2>&1 \
  || { cat "$WORK/synth.log" >&2; fail "training data synth failed"; }
FIRST_VERSION="$(train_version)"
mark "venv + first tiny model"

# No --target: a plain build must give the API (the Dockerfile's last stage).
say "building $API_IMAGE (BuildKit, from a copy of the Dockerfile without its # syntax= line)"
sed '/^# syntax=/d' Dockerfile >"$WORK/Dockerfile"
DOCKER_BUILDKIT=1 nice -n 10 "$BUILD_DOCKER" build -q -f "$WORK/Dockerfile" -t "$API_IMAGE" . \
  >/dev/null
docker run --rm --entrypoint python "$API_IMAGE" -c 'import importlib.util as u, sys
found = [name for name in ("torch", "training", "configs") if u.find_spec(name)]
sys.exit(f"the API image holds {found}" if found else 0)' || fail "the API image holds more than the service"
user="$(docker image inspect -f '{{.Config.User}}' "$API_IMAGE")"
[[ "$user" =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "the API image runs as '$user', not a numeric non-root user"
# The build context as the engine sends it (.dockerignore applied): what the trainer stage
# copies is there, and nothing heavy or private is.
printf 'FROM %s\nCOPY . /context\n' "$PYTHON_IMAGE" >"$WORK/context.Dockerfile"
DOCKER_BUILDKIT=1 "$BUILD_DOCKER" build -q -f "$WORK/context.Dockerfile" -t "$PROJECT-context" . \
  >/dev/null
context=" $(docker run --rm "$PROJECT-context" ls -A /context | tr '\n' ' ')"
docker rmi -f "$PROJECT-context" >/dev/null
for wanted in pyproject.toml bundle service training configs; do
  [[ "$context" == *" $wanted "* ]] || fail "the build context lacks $wanted (.dockerignore):$context"
done
for heavy in .git .venv models runs data tests .env; do
  [[ "$context" != *" $heavy "* ]] || fail "$heavy is in the build context (.dockerignore):$context"
done
mark "build the API image, check its contents and the build context"

API_KEY="smoke-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
: >"$WORK/empty.env"
say "compose up (project $PROJECT, API on 127.0.0.1:$PORT)"
STACK_UP=1
compose up -d --no-build
wait_healthy
mark "compose up until healthy"

IDS="$MODELS_ROOT/$FIRST_VERSION/ids.json"
USER_ID="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["users"][0])' "$IDS")"
N_ITEMS="$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$IDS")"
recommend_all
[ "$SERVED_VERSION" = "$FIRST_VERSION" ] || fail "serving $SERVED_VERSION, expected $FIRST_VERSION"
LIKED="$(awk '{ print $1 }' <<<"$RANKED")"
say "user $USER_ID: top item $LIKED of model $SERVED_VERSION; posting an interaction with it"
post /interactions "{\"user_id\": \"$USER_ID\", \"item_ids\": [\"$LIKED\"]}" "" 401 >/dev/null
accepted="$(post /interactions "{\"user_id\": \"$USER_ID\", \"item_ids\": [\"$LIKED\"]}" key | field accepted)"
[ "$accepted" = 1 ] || fail "the interaction was not accepted ($accepted)"
recommend_all
[[ "$RANKED" != *" $LIKED "* ]] || fail "$LIKED is still recommended after the interaction"
mark "recommend, interact (401 without the key), recommend"

say "training a second version and reloading"
SECOND_VERSION="$(train_version)"
reloaded="$(post /admin/reload '{}' key)"
[ "$(field model_version <<<"$reloaded")" = "$SECOND_VERSION" ] || fail "reload: $reloaded"
[ "$(field previous_version <<<"$reloaded")" = "$FIRST_VERSION" ] || fail "reload: $reloaded"
recommend_all
[ "$SERVED_VERSION" = "$SECOND_VERSION" ] || fail "serving $SERVED_VERSION after the reload"
[[ "$RANKED" != *" $LIKED "* ]] || fail "$LIKED is recommended again after the reload"
mark "second model, reload, recommend"

say "SIGKILL to the api and redis containers, then compose up again"
CONTAINERS=("$(compose ps -q api)" "$(compose ps -q redis)")
started_before="$(docker inspect -f '{{.State.StartedAt}}' "${CONTAINERS[@]}")"
docker kill -s KILL "${CONTAINERS[@]}" >/dev/null
compose up -d --no-build
wait_healthy
started_after="$(docker inspect -f '{{.State.StartedAt}}' "${CONTAINERS[@]}")"
[ -z "$(comm -12 <(sort <<<"$started_before") <(sort <<<"$started_after"))" ] \
  || fail "a container was not restarted after SIGKILL"
recommend_all
[ "$SERVED_VERSION" = "$SECOND_VERSION" ] || fail "serving $SERVED_VERSION after the restart"
[[ "$RANKED" != *" $LIKED "* ]] || fail "the interaction was lost: $LIKED is recommended again"
mark "SIGKILL both, up, healthy, interaction still applied"

compose down -v --remove-orphans
STACK_UP=""
left="$(docker volume ls -q --filter "name=${PROJECT}_")"
[ -z "$left" ] || fail "volumes left after down -v: $left"
mark "compose down -v"

say "passed; seconds per step:"
echo "| step | s |"
echo "|---|---|"
printf '%s' "$TIMINGS"
awk -v a="$LAST" -v b="$START" 'BEGIN { printf "| total | %.1f |\n", a - b }'
