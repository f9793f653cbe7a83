# shellcheck shell=bash disable=SC2154 # the variables of scripts/ci/containers.sh
# Step 9 of the CI container stage: Ghostworks on a real multi-node Docker Swarm.
# Sourced by scripts/ci/containers.sh after step 8 (or after step 3 with
# GHOSTWORKS_CI_STEPS=swarm), whose helpers, private dockerd, base image and
# ghostworks images (ghostworks:ci, and ghostworks:ci-next as the next release)
# it uses.
#
#   - three Docker engines in containers of deploy/images/swarm-node (Debian's
#     docker.io), each with its data-root on a volume, on a network of their
#     own: one manager and two workers. Not --privileged: the capabilities the
#     host's bounding set lacks are dropped (a nested host may not grant all);
#   - a registry of the stage's own (deploy/images/registry, Debian's
#     docker-registry) on that network; the nodes trust it as an insecure
#     registry; the images get there through the manager (docker save | load,
#     tag, push);
#   - the manager's engine socket is bind-mounted into $WORK, so the host's
#     CLI reaches the swarm with DOCKER_HOST=unix://...;
#   - secrets from throwaway files, `docker stack deploy` of
#     deploy/swarm/docker-stack.yml + docker-stack.ci.yml, converged, then
#     acceptance through the published entry point (HAProxy, host mode);
#   - drills under a steady bounded load (load_loop): a rolling update to the
#     next release (zero failed requests, every acknowledged write kept); a
#     release failing its health check (Swarm rolls it back); a worker node's
#     engine killed while its worker runs a job (its tasks rescheduled,
#     failures counted and bounded, the job run again elsewhere once its lease
#     expires, the jobs queued after the loss all done); api scaled to 4 (zero failed requests); the
#     other worker node drained (zero failed requests).
# Swarm's virtual IPs and its ingress routing mesh need IPVS, which a kernel
# may lack: every service uses endpoint_mode dnsrr and the entry point is
# published in host mode on the manager.
# swarm_teardown (called by containers.sh's cleanup, also on failure) removes
# the nodes, the registry, their network and volumes.

SWARM_T0=$(date +%s)
step "9. swarm: three engines, a registry, deploy/swarm/docker-stack.yml and drills under load"
SWARM_DIR="$WORK/swarm"
mkdir -m 0700 "$SWARM_DIR"
SWARM_NODE_IMAGE=ghostworks/swarm-node:bookworm
SWARM_REGISTRY_IMAGE=ghostworks/registry:2
SWARM_LABEL=org.ghostworks.ci=swarm
SWARM_NET="${PROJECT}-swarm"
SWARM_NODES=(manager worker1 worker2)
SWARM_STACK=ghostworks
# The registry as the nodes name it (its alias on SWARM_NET).
SWARM_REGISTRY=registry:5000
# Inside the nodes: bridges (daemon.json), overlays, and the frontend overlay.
SWARM_OVERLAY_POOL=10.232.0.0/16
SWARM_FRONTEND_SUBNET=10.233.0.0/24
SWARM_HTTP_PORT=8080
SWARM_STARTED=0
OUTER_HOST="unix://$SOCKET"
outer() { command "$DOCKER_BIN" -H "$OUTER_HOST" "$@"; }
node_container() { echo "${PROJECT}-swarm-$1"; }
node_socket() { echo "$SWARM_DIR/$1/docker.sock"; }
on_node() { local n="$1"; shift; command "$DOCKER_BIN" -H "unix://$(node_socket "$n")" "$@"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

swarm_dump() {
    local s
    log "---- swarm: nodes and services ----"
    docker node ls 2>&1 || true
    docker service ls 2>&1 || true
    for s in $(docker service ls -q 2>/dev/null); do
        docker service ps --no-trunc --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' "$s" 2>&1 | head -n 12
    done
    log "---- swarm: service logs (last 30 lines each) ----"
    for s in $(docker service ls --format '{{.Name}}' 2>/dev/null); do
        echo "-- $s"; docker service logs --no-task-ids --tail 30 "$s" 2>&1 | tail -n 30
    done
}
swarm_teardown() { # RC
    [ "$SWARM_STARTED" = 1 ] || return 0
    if [ "${1:-0}" != 0 ] && [ -S "$(node_socket manager)" ]; then
        DOCKER_HOST="unix://$(node_socket manager)" swarm_dump
    fi
    export DOCKER_HOST="$OUTER_HOST"
    log "swarm: removing the nodes, the registry, their network and volumes"
    remove_project_leftovers
    SWARM_STARTED=0
}

# ---------------------------------------------------------------------------
# Images: the node and the registry, on the stage's base.
build_image "$SWARM_NODE_IMAGE" "$ROOT/deploy/images/swarm-node"
build_image "$SWARM_REGISTRY_IMAGE" "$ROOT/deploy/images/registry"
# A release whose health check fails: `ghostworks healthcheck` exits 1, the
# roles themselves run as usual.
mkdir -p "$SWARM_DIR/unhealthy"
cat >"$SWARM_DIR/unhealthy/Dockerfile" <<EOF
FROM $next_image
LABEL org.opencontainers.image.version="${version:-0.0.0-dev}-unhealthy"
USER 0:0
RUN mv /usr/local/bin/ghostworks /usr/local/bin/ghostworks.release \\
 && printf '#!/bin/sh\n[ "\$1" = healthcheck ] && exit 1\nexec /usr/local/bin/ghostworks.release "\$@"\n' >/usr/local/bin/ghostworks \\
 && chmod 0755 /usr/local/bin/ghostworks
USER 1001:1001
EOF
unhealthy_image="${GHOSTWORKS_IMAGE%:*}:ci-unhealthy"
build_image "$unhealthy_image" "$SWARM_DIR/unhealthy"
pass "swarm images built (swarm-node, registry, an unhealthy release)"

# ---------------------------------------------------------------------------
# The cluster.
remove_project_leftovers
SWARM_STARTED=1
outer network create --label "$SWARM_LABEL" "$SWARM_NET" >/dev/null || die "swarm: network" "docker network create"
# Every capability but those this host's bounding set lacks (--privileged
# would ask for all of them and fail there).
cap_names=(chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable
    net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio sys_chroot
    sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time sys_tty_config mknod lease
    audit_write audit_control setfcap mac_override mac_admin syslog wake_alarm block_suspend audit_read
    perfmon bpf checkpoint_restore)
cap_bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
node_caps=(--cap-add ALL)
for i in "${!cap_names[@]}"; do
    (( (cap_bnd >> i) & 1 )) || node_caps+=(--cap-drop "${cap_names[i]^^}")
done
cgroup_mount=()
# cgroup v1: the nodes' engines create their cgroups in the host's hierarchy.
[ -f /sys/fs/cgroup/cgroup.controllers ] || cgroup_mount=(-v /sys/fs/cgroup:/sys/fs/cgroup:rw)
swarm_t0=$(date +%s)
for n in "${SWARM_NODES[@]}"; do
    mkdir -m 0700 "$SWARM_DIR/$n"
    outer volume create --label "$SWARM_LABEL" "$(node_container "$n")" >/dev/null
    outer run -d --name "$(node_container "$n")" --hostname "$n" --label "$SWARM_LABEL" \
        "${node_caps[@]}" "${cgroup_mount[@]}" \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
        --network "$SWARM_NET" -v "$(node_container "$n"):/var/lib/docker" \
        -v "$SWARM_DIR/$n:/run/ghostworks-node" \
        "$SWARM_NODE_IMAGE" -H unix:///run/ghostworks-node/docker.sock \
        --insecure-registry "$SWARM_REGISTRY" >/dev/null \
        || die "swarm: node $n" "docker run of the node's container failed"
done
outer volume create --label "$SWARM_LABEL" "${PROJECT}-swarm-registry" >/dev/null
outer run -d --name "${PROJECT}-swarm-registry" --label "$SWARM_LABEL" \
    --network "$SWARM_NET" --network-alias "${SWARM_REGISTRY%:*}" \
    --read-only --cap-drop ALL --security-opt no-new-privileges:true \
    -v "${PROJECT}-swarm-registry:/var/lib/docker-registry" "$SWARM_REGISTRY_IMAGE" >/dev/null \
    || die "swarm: registry" "docker run of the registry failed"
node_up() { on_node "$1" info --format '{{.ID}}'; }
for n in "${SWARM_NODES[@]}"; do
    if ! wait_for 60 node_up "$n"; then
        outer logs --tail 30 "$(node_container "$n")" 2>&1
        die "swarm: node $n" "its engine did not answer within 60 s"
    fi
done
node_ip() { outer inspect -f "{{(index .NetworkSettings.Networks \"$SWARM_NET\").IPAddress}}" "$(node_container "$1")"; }
manager_ip="$(node_ip manager)"
on_node manager swarm init --advertise-addr "$manager_ip" --default-addr-pool "$SWARM_OVERLAY_POOL" \
    >"$WORK/swarm-init.log" 2>&1 || { cat "$WORK/swarm-init.log"; die "swarm: init" "docker swarm init"; }
# The join token is a credential: it goes to the workers' engines in a request
# body read from a 0600 file, never on a command line.
join_token="$(on_node manager swarm join-token -q worker)"
for n in worker1 worker2; do
    ( umask 077; printf '{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"%s","RemoteAddrs":["%s:2377"],"JoinToken":"%s"}' \
        "$(node_ip "$n")" "$manager_ip" "$join_token" >"$SWARM_DIR/join.json" )
    curl -sS -f --unix-socket "$(node_socket "$n")" -H 'content-type: application/json' \
        --data-binary @"$SWARM_DIR/join.json" http://localhost/swarm/join >"$WORK/swarm-join.log" 2>&1 \
        || { cat "$WORK/swarm-join.log"; die "swarm: join $n" "POST /swarm/join"; }
done
rm -f "$SWARM_DIR/join.json"
unset join_token
SWARM_MANAGER_HOST="unix://$(node_socket manager)"
export DOCKER_HOST="$SWARM_MANAGER_HOST"
nodes_ready() { test "$(docker node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active$')" = 3; }
wait_for 60 nodes_ready || die "swarm: nodes" "not 3 Ready nodes: $(docker node ls 2>&1 | tr '\n' ' ')"
manager_id="$(docker node ls --filter role=manager -q)"
docker node update --label-add ghostworks.datastore=true "$manager_id" >/dev/null
pass "swarm of 3 engines (1 manager, 2 workers) formed in $(($(date +%s) - swarm_t0)) s; the manager labelled ghostworks.datastore=true"

# The images, through the manager into the registry.
push_t0=$(date +%s)
declare -A swarm_images=(
    ["$GHOSTWORKS_IMAGE"]="ghostworks:ci"
    ["$next_image"]="ghostworks:ci-next"
    ["$unhealthy_image"]="ghostworks:ci-unhealthy"
    ["$POSTGRES_IMAGE"]="ghostworks/postgres:15"
    ["$REDIS_IMAGE"]="ghostworks/redis:7"
    ["$HAPROXY_IMAGE"]="ghostworks/haproxy:2.6"
    ["$SMTP_SINK_IMAGE"]="ghostworks/smtp-sink:bookworm"
)
for img in "${!swarm_images[@]}"; do
    target="$SWARM_REGISTRY/${swarm_images[$img]}"
    { outer save "$img" | docker load -q && docker tag "$img" "$target" && docker push -q "$target"; } \
        >"$WORK/push.log" 2>&1 || { cat "$WORK/push.log"; die "swarm: push $target" "save | load | push through the manager"; }
done
pass "images pushed to the stage's registry through the manager in $(($(date +%s) - push_t0)) s"

# Secrets from throwaway files (0600, a 0700 directory); the roles read them
# at /run/secrets/<name> (Swarm mounts them 0444, owned by root).
swarm_secrets="$SWARM_DIR/secrets"
mkdir -m 0700 "$swarm_secrets"
(
    umask 077
    pg_password="$(rand)"; api_password="$(rand)"; worker_password="$(rand)"
    printf '%s' "$(rand)" >"$swarm_secrets/jwt_secret"
    printf '%s' "$pg_password" >"$swarm_secrets/postgres_password"
    printf '%s' "$api_password" >"$swarm_secrets/api_db_password"
    printf '%s' "$worker_password" >"$swarm_secrets/worker_db_password"
    printf '%s' "postgres://ghostworks:$pg_password@postgres:5432/ghostworks" >"$swarm_secrets/database_admin_url"
    printf '%s' "postgres://ghostworks_api:$api_password@postgres:5432/ghostworks" >"$swarm_secrets/database_url"
    printf '%s' "postgres://ghostworks_worker_login:$worker_password@postgres:5432/ghostworks" >"$swarm_secrets/worker_database_url"
    printf '%s' "smtp://mailsink:2525" >"$swarm_secrets/smtp_url"
    printf '%s' "redis://redis:6379/0" >"$swarm_secrets/redis_url"
    printf '%s' "$(rand)" >"$swarm_secrets/grafana_admin_password"
)
for f in "$swarm_secrets"/*; do
    docker secret create "$(basename "$f")" "$f" >/dev/null || die "swarm: secrets" "docker secret create $(basename "$f")"
done
rm -rf "$swarm_secrets"
pass "swarm secrets created from files: $(docker secret ls --format '{{.Name}}' | sort | tr '\n' ' ')"

# ---------------------------------------------------------------------------
# The stack. GHOSTWORKS_ENV_FILE is relative to the repository root (as in Compose).
write_app_env "$SWARM_DIR/app.env"
chmod 0644 "$SWARM_DIR/app.env"
stack_env=(
    GHOSTWORKS_REGISTRY="$SWARM_REGISTRY" GHOSTWORKS_TAG=ci
    GHOSTWORKS_ENV_FILE="$(realpath --relative-to="$ROOT" "$SWARM_DIR/app.env")"
    GHOSTWORKS_FRONTEND_SUBNET="$SWARM_FRONTEND_SUBNET" GHOSTWORKS_HTTP_PORT="$SWARM_HTTP_PORT"
)
stack_files=(-c "$ROOT/deploy/swarm/docker-stack.yml" -c "$ROOT/deploy/swarm/docker-stack.ci.yml")
# The stack's migrate is a replicated-job, which Debian 12's docker CLI (20.10)
# does not know in stack files (it does in `docker service`); a newer CLI on
# PATH (e.g. Docker's own packages) does, against the same 20.10 engines.
swarm_cli=""
for c in "$(type -P docker || true)" "$DOCKER_BIN"; do
    if [ -n "$c" ] && env "${stack_env[@]}" "$c" stack config "${stack_files[@]}" 2>/dev/null | grep -q 'mode: replicated-job'; then
        swarm_cli="$c"
        break
    fi
done
[ -n "$swarm_cli" ] || die "swarm: docker CLI" "no docker CLI renders the stack's replicated-job (\`docker stack config\`): Debian 12's docker.io CLI is 20.10; install a docker CLI >= 24 on PATH"
log "stack CLI: $swarm_cli $("$swarm_cli" version -f '{{.Client.Version}}' 2>/dev/null)"
stack_deploy() {
    env "${stack_env[@]}" "$swarm_cli" stack deploy --detach=true --resolve-image never --prune \
        "${stack_files[@]}" "$SWARM_STACK"
}
svc() { echo "${SWARM_STACK}_$1"; }
# running_tasks SERVICE: its tasks whose desired and current state are running.
running_tasks() {
    docker service ps --filter desired-state=running --format '{{.CurrentState}}' "$(svc "$1")" 2>/dev/null \
        | grep -c '^Running' || true
}
converged() { # SERVICE REPLICAS
    test "$(running_tasks "$1")" = "$2"
}
migrated() {
    docker service ps --format '{{.CurrentState}}' "$(svc migrate)" 2>/dev/null | grep -q '^Complete'
}
stack_converged() {
    migrated && converged postgres 1 && converged redis 1 && converged api 2 && converged worker 2 \
        && converged web 2 && converged edge 1 && converged mailsink 1
}
BASE="http://$manager_ip:$SWARM_HTTP_PORT"
edge_answers() { test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$BASE/health/ready")" = 200; }
stack_t0=$(date +%s.%N)
stack_deploy >"$WORK/stack.log" 2>&1 || { cat "$WORK/stack.log"; die "swarm: stack deploy" "docker stack deploy failed"; }
if ! wait_for 240 stack_converged || ! wait_for 60 edge_answers; then
    die "swarm: stack converged" "not every service converged within 240 s, or the edge did not answer /health/ready"
fi
stack_up="$(since "$stack_t0")"
pass "stack deployed and converged in $stack_up s (migrate job complete; postgres, redis, api x2, worker x2, web x2, edge, mailsink running and healthy)"

# Placement and the hardening the stack asks for, as the engines applied it.
tasks_on() { # SERVICE: the nodes its running tasks are on
    docker service ps --filter desired-state=running --format '{{.Node}}' "$(svc "$1")" | sort | tr '\n' ' '
}
check "datastores and the edge on the labelled manager" \
    test "$(tasks_on postgres)$(tasks_on redis)$(tasks_on edge)" = "manager manager manager "
check "backend overlay is internal" test "$(docker network inspect -f '{{.Internal}}' "$(svc backend)")" = true
check "every service uses endpoint_mode dnsrr" test -z "$(docker service ls -q | xargs "$DOCKER_BIN" service inspect \
    -f '{{.Spec.Name}} {{.Spec.EndpointSpec.Mode}}' | grep -v ' dnsrr$')"
check "the edge is published in host mode only" \
    test "$(docker service inspect -f '{{range .Spec.EndpointSpec.Ports}}{{.PublishMode}}:{{.PublishedPort}} {{end}}' "$(svc edge)")" = "host:$SWARM_HTTP_PORT "
hardened_spec() { # SERVICE: user, read-only root, dropped capabilities as the Compose files have them
    docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.User}} {{.Spec.TaskTemplate.ContainerSpec.ReadOnly}} {{json .Spec.TaskTemplate.ContainerSpec.CapabilityDrop}}' "$(svc "$1")"
}
for s in api worker web migrate; do
    check "$s: 1001:1001, read-only root, CapDrop ALL" test "$(hardened_spec "$s")" = '1001:1001 true ["ALL"]'
done
task_container() { docker ps -q --filter "label=com.docker.swarm.service.name=$(svc "$1")" | head -n 1; }
# A task on the manager is inspected through the manager's own engine.
no_new_privs() { # SERVICE: CapDrop ALL, and NoNewPrivs (from the node's daemon.json) on its process
    local c; c="$(task_container "$1")"
    test "$(docker inspect -f '{{json .HostConfig.CapDrop}}' "$c")" = '["ALL"]' \
        && docker exec "$c" grep -Eq '^NoNewPrivs:[[:space:]]+1$' /proc/1/status
}
for s in postgres redis edge; do
    check "$s task: CapDrop ALL, no-new-privileges from the node's daemon.json" no_new_privs "$s"
done

# ---------------------------------------------------------------------------
# Acceptance through the entry point.
mailsink_logs() { docker service logs --raw "$(svc mailsink)" 2>/dev/null; }
password='Ci-Swarm-Passw0rd!2026'
req GET /health
expect "swarm: GET /health through the edge" 200
req GET /login
expect "swarm: GET /login (the web app through the edge)" 200
r="$(rand)"; email="ci-swarm-${r:0:12}@example.com"
req POST /api/v1/auth/register "{\"email\":\"$email\",\"password\":\"$password\",\"first_name\":\"Ci\",\"last_name\":\"Swarm\"}"
expect "swarm: register" 202
mail_t0=$(date +%s)
await_verification_mail "$email"
if [ -n "$link" ]; then
    pass "swarm: the worker mailed the verification link to the sink in $(($(date +%s) - mail_t0)) s"
else
    fail "swarm: verification e-mail" "no message to $email with a /verify-email link within 60 s"
fi
req POST "/api/v1/auth/verify-email?verification_token=${link##*verification_token=}"
expect "swarm: verify the account with the e-mailed token" 200
req POST /api/v1/auth/login "{\"email\":\"$email\",\"password\":\"$password\"}"
expect "swarm: login" 200
token="$(jq -r '.access_token // empty' <<<"$BODY" 2>/dev/null || true)"
req POST /api/v1/workspaces "{\"name\":\"Swarm\",\"slug\":\"swarm-${r:0:8}\"}" "$token"
expect "swarm: create a workspace" 201
ws="$(jq -r '.id // empty' <<<"$BODY" 2>/dev/null || true)"
req POST "/api/v1/workspaces/$ws/artifacts" '{"name":"swarm-report","tags":["swarm"]}' "$token"
expect "swarm: create an artifact" 201
{ [ -n "$token" ] && [ -n "$ws" ]; } || die "swarm: acceptance" "no session or workspace for the drills"

# ---------------------------------------------------------------------------
# Drills, each under the steady load of load_loop.
# load_figures: the last load's totals: reads, writes, failures (not 200/201) and the answers.
load_figures() {
    reads="$(cat "$OUT_DIR/workspace.log" "$OUT_DIR/page.log" "$OUT_DIR/list.log" | wc -l)"
    writes="$(wc -l <"$OUT_DIR/write.log")"
    bad="$(cat "$OUT_DIR/workspace.log" "$OUT_DIR/page.log" "$OUT_DIR/list.log" | grep -cv '^200$' || true)"
    bad=$((bad + $(grep -cv '^201 ' "$OUT_DIR/write.log" || true)))
    codes="$(cut -d' ' -f1 "$OUT_DIR"/*.log | sort | uniq -c | tr -s ' \n' ' ')"
}
spec_image() { docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$(svc "$1")"; }
update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$(svc "$1")"; }
service_update() { # SERVICE IMAGE: a rolling update, waited for
    "$swarm_cli" service update --detach=false --quiet --no-resolve-image --image "$2" "$(svc "$1")"
}

# Drills a and b deploy through `ghostworks deploy --runtime swarm` (the
# release binary's, from the host, against the manager) when the binary has
# it, else through `docker service update`.
gw_swarm_deploy() { # RELEASE
    "$binary" deploy --runtime swarm --docker "$swarm_cli" --release "$1" --swarm-stack "$SWARM_STACK" \
        --swarm-entry "$BASE" --skip-backup --state-dir "$SWARM_DIR/deploy-state"
}
deploy_with="docker service update"
if "$binary" deploy --help 2>/dev/null | grep -q -- '--swarm-stack'; then
    deploy_with="ghostworks deploy --runtime swarm"
fi
# The runtime pins a release by its digest in the registry.
pinned_ref() { # REF: REF as REPOSITORY@DIGEST, from the manager's copy
    docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$1" | grep -m 1 "^${1%:*}@"
}
is_release() { # SERVICE REF: the service's spec names REF, by tag or by digest
    local image; image="$(spec_image "$1")"
    [ "$image" = "$2" ] || [ "$image" = "$(pinned_ref "$2")" ]
}

# a. A rolling update to the next release: migrate again, then api, worker, web.
next_ref="$SWARM_REGISTRY/ghostworks:ci-next"
load_start "$SWARM_DIR/load-a" workspace page list write
sleep 3
update_t0=$(date +%s.%N)
update_ok=1
if [ "$deploy_with" = "docker service update" ]; then
    for s in migrate api worker web; do
        if ! service_update "$s" "$next_ref" >"$WORK/update.log" 2>&1; then
            fail "swarm a: update $s to ci-next" "$(tail -c 400 "$WORK/update.log" | tr '\n' ' ')"
            update_ok=0
        fi
    done
elif ! gw_swarm_deploy "$next_ref" >"$WORK/update.log" 2>&1; then
    fail "swarm a: ghostworks deploy --runtime swarm --release $next_ref" "$(tail -c 400 "$WORK/update.log" | tr '\n' ' ')"
    update_ok=0
fi
update_secs="$(since "$update_t0")"
sleep 3
load_stop
load_figures
failures_a=$bad
[ "$update_ok" = 0 ] || pass "swarm a: migrate, api, worker and web updated to ci-next by $deploy_with in $update_secs s (start-first, one task at a time)"
on_next() {
    local s
    for s in api worker web; do
        is_release "$s" "$next_ref" && [ "$(update_state "$s")" = completed ] \
            && converged "$s" 2 || return 1
    done
}
check "swarm a: api, worker and web run ci-next, UpdateStatus completed" on_next
check "swarm a: zero failed requests during the rolling update ($reads reads, $writes writes; answers:$codes)" \
    test "$bad" = 0 -a "$reads" -gt 50 -a "$writes" -gt 5
check "swarm a: every acknowledged write is present" acked_present
if [ "$deploy_with" != "docker service update" ]; then
    # `deploy --runtime swarm status`: the live release and each service's tasks and image.
    status_shows_next() {
        local out; out="$("$binary" deploy --runtime swarm --docker "$swarm_cli" --swarm-stack "$SWARM_STACK" \
            --state-dir "$SWARM_DIR/deploy-state" status 2>&1)" || return 1
        grep -q "^live: .*ghostworks:ci-next" <<<"$out" \
            && grep -Eq "^$(svc api) +2/2 +completed +.*ghostworks(:ci-next)?@sha256:" <<<"$out"
    }
    check "swarm a: deploy --runtime swarm status names ci-next live and api at 2/2, updated, pinned by digest" status_shows_next
fi

# b. A release whose health check fails: Swarm rolls the update back.
unhealthy_ref="$SWARM_REGISTRY/ghostworks:ci-unhealthy"
load_start "$SWARM_DIR/load-b" workspace page list write
rollback_t0=$(date +%s.%N)
if [ "$deploy_with" = "docker service update" ]; then
    # `docker service update --detach=false` exits 0 even when Swarm rolled the
    # update back (CLI 28.2 against 20.10 engines): the service's UpdateStatus tells.
    service_update api "$unhealthy_ref" >"$WORK/update.log" 2>&1 && update_rc=0 || update_rc=$?
    log "swarm b: docker service update of the unhealthy release returned $update_rc"
else
    gw_swarm_deploy "$unhealthy_ref" >"$WORK/update.log" 2>&1 && update_rc=0 || update_rc=$?
    check "swarm b: ghostworks deploy of the unhealthy release exits non-zero ($update_rc: $(tail -n 1 "$WORK/update.log" | head -c 300))" \
        test "$update_rc" != 0
    last_deploy() { "$binary" deploy history --json --state-dir "$SWARM_DIR/deploy-state" | jq -c '.[-1] | {artifact: .release.artifact, result, failed_step}'; }
    check "swarm b: deploy history --json ends with the unhealthy release rolled back: $(last_deploy 2>&1)" \
        test "$(last_deploy | jq -r '"\(.artifact) \(.result)"')" = "$unhealthy_ref rolled_back"
fi
rolled_back() { [ "$(update_state api)" = rollback_completed ] && converged api 2; }
wait_for 120 rolled_back || true
rollback_secs="$(since "$rollback_t0")"
load_stop
load_figures
failures_b=$bad
back_on_next() { [ "$(update_state api)" = rollback_completed ] && is_release api "$next_ref"; }
check "swarm b: UpdateStatus rollback_completed, api back on ci-next in $rollback_secs s ($(docker service inspect -f '{{.UpdateStatus.Message}}' "$(svc api)" 2>/dev/null))" \
    back_on_next
unhealthy_left() { # api tasks of the unhealthy release still running
    docker service ps --filter desired-state=running --format '{{.Image}}' "$(svc api)" \
        | grep -Fx -e "$unhealthy_ref" -e "$(pinned_ref "$unhealthy_ref" || echo "$unhealthy_ref")"
}
check_fails "swarm b: no api task of the unhealthy release left running" unhealthy_left
log "swarm b: $bad failed requests while the unhealthy release was tried ($reads reads, $writes writes; answers:$codes)"
check "swarm b: zero failed requests while the unhealthy release was tried and rolled back" test "$bad" = 0
check "swarm b: every acknowledged write is present" acked_present

# c. A worker node's engine is killed while its worker runs a job: its tasks
# are rescheduled, the service keeps answering, the job in flight there is run
# again by another worker once its lease expires, and the jobs queued after the
# loss are all done. The victim is the worker node with the most tasks among
# those running a worker task (Swarm spreads the two replicas over two nodes).
victim=""
most=0
for n in worker1 worker2; do
    [[ " $(tasks_on worker)" == *" $n "* ]] || continue
    k="$(docker node ps "$n" --filter desired-state=running -q 2>/dev/null | wc -l)"
    [ "$k" -le "$most" ] || { most=$k; victim=$n; }
done
[ -n "$victim" ] || die "swarm c: victim" "no worker node runs a worker task (tasks on: $(tasks_on worker))"
victim_tasks="$(docker node ps "$victim" --filter desired-state=running --format '{{.Name}}' | tr '\n' ' ')"
psql_manager() {
    docker exec "$(task_container postgres)" psql -v ON_ERROR_STOP=1 -U ghostworks -d ghostworks -tAc "$1"
}
worker_tasks_on() { # NODE: its worker task containers (a container's id is its hostname)
    on_node "$1" ps -q --filter "label=com.docker.swarm.service.name=$(svc worker)"
}
# The job in flight: the SMTP sink is paused (a relay that accepted the
# connection and never answers) and so are the other nodes' workers, so the
# victim's worker claims the verification job of a new user and waits on the
# relay (for up to 20 s) when its node is lost.
mailsink_container="$(task_container mailsink)"
docker pause "$mailsink_container" >/dev/null || die "swarm c: pause the SMTP sink" "docker pause $mailsink_container"
paused_workers=()
for n in "${SWARM_NODES[@]}"; do
    [ "$n" != "$victim" ] || continue
    for c in $(worker_tasks_on "$n"); do
        on_node "$n" pause "$c" >/dev/null && paused_workers+=("$n:$c")
    done
done
unpause_workers() {
    local p
    for p in "${paused_workers[@]}"; do on_node "${p%%:*}" unpause "${p#*:}" >/dev/null || true; done
    paused_workers=()
}
r="$(rand)"; inflight_email="ci-swarm-c0-${r:0:10}@example.com"
req POST /api/v1/auth/register "{\"email\":\"$inflight_email\",\"password\":\"$password\",\"first_name\":\"Ci\",\"last_name\":\"Swarm\"}"
[ "$STATUS" = 202 ] || { unpause_workers; die "swarm c: register the in-flight job's user" "HTTP $STATUS"; }
inflight_job() { # id, status, attempts and holder (a container id) of that user's verification job
    psql_manager "SELECT j.id, j.status, j.attempts, coalesce(split_part(j.locked_by, ':', 1), '') FROM jobs j
        JOIN users u ON j.payload->>'user_id' = u.id::text
        WHERE j.kind = 'email.verification' AND u.email = '$inflight_email'" | tr '|' ' '
}
held_by_victim() {
    local status attempts holder
    read -r _ status attempts holder <<<"$(inflight_job 2>/dev/null)"
    [ "$status" = running ] && [ -n "$holder" ] && [[ " $(worker_tasks_on "$victim" | tr '\n' ' ') " == *" $holder "* ]]
}
wait_for 20 held_by_victim || true
read -r inflight_id inflight_status _ inflight_holder <<<"$(inflight_job 2>/dev/null)"
check "swarm c: the new user's verification job runs on $victim's worker ($inflight_status, held by ${inflight_holder:-nobody})" held_by_victim
load_start "$SWARM_DIR/load-c" workspace page list write
sleep 3
kill_t0=$(date +%s.%N)
outer kill "$(node_container "$victim")" >/dev/null
unpause_workers
docker unpause "$mailsink_container" >/dev/null || fail "swarm c: unpause the SMTP sink" "docker unpause $mailsink_container"
log "swarm c: killed $victim's engine (its container), which ran: $victim_tasks, and job $inflight_id"
node_down() { [ "$(docker node inspect -f '{{.Status.State}}' "$victim")" = down ]; }
rescheduled() {
    converged api 2 && converged worker 2 && converged web 2 \
        && [[ " $(tasks_on api)$(tasks_on worker)$(tasks_on web)" != *" $victim "* ]]
}
wait_for 90 node_down || true
down_secs="$(since "$kill_t0")"
wait_for 120 rescheduled || true
reschedule_secs="$(since "$kill_t0")"
check "swarm c: $victim is down ($down_secs s) and its tasks run elsewhere ($reschedule_secs s after the kill)" rescheduled
# Jobs queued after the loss (verification e-mails of new users) all reach
# `succeeded`.
c_emails=()
for i in 1 2 3; do
    r="$(rand)"; e="ci-swarm-c$i-${r:0:10}@example.com"
    req POST /api/v1/auth/register "{\"email\":\"$e\",\"password\":\"$password\",\"first_name\":\"Ci\",\"last_name\":\"Swarm\"}"
    [ "$STATUS" = 202 ] && c_emails+=("$e")
done
jobs_succeeded() { # the verification jobs of the users registered after the loss that succeeded
    local list
    list="$(printf "'%s'," "${c_emails[@]}")"
    psql_manager "SELECT count(*) FROM jobs j JOIN users u ON j.payload->>'user_id' = u.id::text
        WHERE j.kind = 'email.verification' AND j.status = 'succeeded' AND u.email IN (${list%,})"
}
all_jobs_done() { [ "$(jobs_succeeded 2>/dev/null)" = 3 ]; }
jobs_t0=$(date +%s)
check "swarm c: 3 users registered after the loss" test "${#c_emails[@]}" = 3
wait_for 120 all_jobs_done || true
check "swarm c: their 3 verification jobs succeeded ($(($(date +%s) - jobs_t0)) s after the registrations)" all_jobs_done
# The job in flight on the lost node: its lease (JOB_LEASE_SECONDS, 60 s) runs
# out, a surviving worker takes it back and runs it again; its e-mail reaches
# the sink.
rerun() {
    local status attempts holder
    read -r _ status attempts holder <<<"$(inflight_job 2>/dev/null)"
    [ "$status" = succeeded ] && [ "$attempts" -ge 2 ]
}
wait_for 150 rerun || true
rerun_secs="$(since "$kill_t0")"
read -r _ inflight_status inflight_attempts _ <<<"$(inflight_job 2>/dev/null)"
check "swarm c: the job in flight on $victim ran again elsewhere and succeeded ($rerun_secs s after the kill; $inflight_status after ${inflight_attempts:-?} attempts)" rerun
mailed_once() {
    test "$(mailsink_logs | jq -Rc --arg to "$inflight_email" \
        'fromjson? | select(.event == "message" and (.rcpt_to | index($to)))' | wc -l)" = 1
}
check "swarm c: its verification e-mail reached the sink once" mailed_once
sleep 3
load_stop
load_figures
failures_c=$bad
log "swarm c: failed requests during the node loss: $bad ($reads reads, $writes writes; answers:$codes)"
if [ "$bad" -gt 0 ]; then
    log "swarm c: the failed answers, in order:"
    grep -vE '^(200|201 .*)$' "$OUT_DIR"/*.log | sed "s|^$OUT_DIR/||" | sort | uniq -c | head -n 20
fi
# A killed node's tasks stop answering without closing their connections: the
# requests in flight to them at the kill time out. The bound: 5% of the requests.
check "swarm c: failed requests during the node loss bounded ($bad of $((reads + writes)), bound 5%)" \
    test "$((bad * 20))" -le "$((reads + writes))"
check "swarm c: every acknowledged write is present" acked_present

# d. api scaled to 4 under load.
load_start "$SWARM_DIR/load-d" workspace page list write
sleep 3
scale_t0=$(date +%s.%N)
"$swarm_cli" service scale --detach=false "$(svc api)=4" >"$WORK/scale.log" 2>&1 \
    || fail "swarm d: scale api to 4" "$(tail -c 300 "$WORK/scale.log")"
wait_for 90 converged api 4 || true
scale_secs="$(since "$scale_t0")"
sleep 5
load_stop
load_figures
failures_d=$bad
check "swarm d: api runs 4 tasks ($scale_secs s)" converged api 4
check "swarm d: zero failed requests while api scaled to 4 ($reads reads, $writes writes; answers:$codes)" \
    test "$bad" = 0 -a "$reads" -gt 30

# e. The remaining worker node drained under load (maintenance): its tasks move
# to the manager, gracefully stopped.
drained=worker1
[ "$victim" != worker1 ] || drained=worker2
load_start "$SWARM_DIR/load-e" workspace page list write
sleep 3
drain_t0=$(date +%s.%N)
docker node update --availability drain "$drained" >/dev/null || fail "swarm e: drain $drained" "docker node update"
moved() {
    converged api 4 && converged worker 2 && converged web 2 \
        && [[ " $(tasks_on api)$(tasks_on worker)$(tasks_on web)" != *" $drained "* ]]
}
wait_for 120 moved || true
drain_secs="$(since "$drain_t0")"
sleep 3
load_stop
load_figures
failures_e=$bad
check "swarm e: $drained drained, its tasks on the manager in $drain_secs s" moved
check "swarm e: zero failed requests while $drained was drained ($reads reads, $writes writes; answers:$codes)" \
    test "$bad" = 0 -a "$reads" -gt 30
check "swarm e: every acknowledged write is present" acked_present
docker node update --availability active "$drained" >/dev/null || true

SWARM_FIGURES="stack up ${stack_up} s; rolling update ${update_secs} s (failures ${failures_a}); unhealthy release rolled back in ${rollback_secs} s (failures ${failures_b}); node loss: down after ${down_secs} s, rescheduled after ${reschedule_secs} s, its job in flight run again after ${rerun_secs} s (failures ${failures_c}); scale api 2->4 ${scale_secs} s (failures ${failures_d}); drain ${drain_secs} s (failures ${failures_e}); step $(($(date +%s) - SWARM_T0)) s"
log "swarm figures: $SWARM_FIGURES"
pass "swarm figures: $SWARM_FIGURES"
mkdir -p "$CI_DIR" 2>/dev/null
printf '{"stack_up_s": %s, "update_s": %s, "update_failures": %s, "rollback_s": %s, "rollback_failures": %s, "node_down_s": %s, "reschedule_s": %s, "inflight_rerun_s": %s, "node_loss_failures": %s, "scale_s": %s, "scale_failures": %s, "drain_s": %s, "drain_failures": %s, "step_s": %s}\n' \
    "$stack_up" "$update_secs" "$failures_a" "$rollback_secs" "$failures_b" "$down_secs" "$reschedule_secs" "$rerun_secs" \
    "$failures_c" "$scale_secs" "$failures_d" "$drain_secs" "$failures_e" "$(($(date +%s) - SWARM_T0))" >"$CI_DIR/swarm.json" 2>/dev/null || true
export DOCKER_HOST="$OUTER_HOST"
