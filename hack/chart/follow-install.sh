#!/usr/bin/env bash
# Follows docs/install.md literally: runs its ```sh blocks in order, in one shell, as
# written. A block right after an HTML comment `<!-- follow-install: ACTION (why) -->` is
# handled by ACTION instead:
#   skip            not run here (the comment says why); printed for the record
#   start-operator  the rollout no pod can make on a control plane without nodes: start
#                   `celery-operator run` with the installed Deployment's arguments, the
#                   URLs from the Secret it references, and a token of its ServiceAccount
#                   (so the operator has exactly the chart's permissions)
#
# Needs: KUBECONFIG (admin of the cluster to install into), helm, kubectl, celery-operator
# and python3 on PATH, CELERY_BROKER_URL and CELERY_RESULT_BACKEND of a Redis that a demo
# worker (celery_operator.devstack.demo_app) consumes. Run from anywhere; it works in the
# repository root, as the guide does.
set -euo pipefail
cd "$(dirname "$0")/../.."

DOC=${DOC:-docs/install.md}
: "${KUBECONFIG:?KUBECONFIG must point at the cluster to install into}"
: "${CELERY_BROKER_URL:?}" "${CELERY_RESULT_BACKEND:?}"
export IMAGE=${IMAGE:-celery-operator-unbuilt}  # never pulled: no pod runs here

work=$(mktemp -d)
operator_pid=
operator_log=$work/operator.log

cleanup() {
  local status=$?
  if [[ -n $operator_pid ]]; then
    kill "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    echo "--- follow-install failed; operator log:" >&2
    tail -n 40 "$operator_log" >&2 2>/dev/null || true
    # Leave no release behind for the next run (the guide's own uninstall did not run).
    helm uninstall celery-operator --namespace celery-operator >/dev/null 2>&1 || true
    kubectl delete --ignore-not-found -f examples/periodictask-interval.yaml \
      -f examples/scheduledtask-now.yaml >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# ---- the blocks of the guide, in order: NNN.<action>.sh ---------------------------------
awk -v dir="$work" '
  match($0, /^<!-- follow-install: [a-z-]+/) {
    action = substr($0, 22, RLENGTH - 21); next
  }
  /^```sh$/ { n++; file = sprintf("%s/%03d.%s.sh", dir, n, action ? action : "run");
              action = ""; inblock = 1; next }
  inblock && /^```$/ { inblock = 0; close(file); next }
  inblock { print > file; next }
  NF { action = "" }  # a marker applies only to the block right after it
' "$DOC"

start_operator() {
  local ns=celery-operator deploy=celery-operator
  kubectl --namespace "$ns" wait --for=create "deployment/$deploy" --timeout=30s
  local jsonpath='{.spec.template.spec.serviceAccountName}'
  local sa
  sa=$(kubectl --namespace "$ns" get deployment "$deploy" -o jsonpath="$jsonpath")
  mapfile -t args < <(kubectl --namespace "$ns" get deployment "$deploy" \
    -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
  # The environment as the kubelet would build it from the secretKeyRefs and the
  # downward API (metadata.namespace; metadata.name and .uid name the Lease holder).
  local envs=() line name ref secret key field
  local env_refs='{range .spec.template.spec.containers[0].env[*]}{.name}={.valueFrom.secretKeyRef.name}/{.valueFrom.secretKeyRef.key}/{.valueFrom.fieldRef.fieldPath}{"\n"}{end}'
  while IFS= read -r line; do
    [[ -z $line ]] && continue
    name=${line%%=*}; ref=${line#*=}; secret=${ref%%/*}; ref=${ref#*/}
    key=${ref%%/*}; field=${ref#*/}
    if [[ $field == metadata.namespace ]]; then
      envs+=("$name=$ns")
      continue
    fi
    if [[ $field == metadata.name || $field == metadata.uid ]]; then
      envs+=("$name=follow-install")  # the leader Lease's holder identity
      continue
    fi
    envs+=("$name=$(kubectl --namespace "$ns" get secret "$secret" \
      -o jsonpath="{.data.$key}" | base64 -d)")
  done < <(kubectl --namespace "$ns" get deployment "$deploy" -o jsonpath="$env_refs")

  # A kubeconfig with the ServiceAccount's token: the pod's credentials, nothing more.
  local kc=$work/serviceaccount.kubeconfig server ca
  server=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --minify --raw \
    -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  if [[ -z $ca ]]; then
    ca=$work/ca.crt
    kubectl config view --minify --raw \
      -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$ca"
  fi
  kubectl config --kubeconfig="$kc" set-cluster target --server="$server" \
    --certificate-authority="$ca" --embed-certs >/dev/null
  kubectl config --kubeconfig="$kc" set-credentials "$sa" \
    --token="$(kubectl --namespace "$ns" create token "$sa" --duration=1h)" >/dev/null
  kubectl config --kubeconfig="$kc" set-context target --cluster=target --user="$sa" >/dev/null
  kubectl config --kubeconfig="$kc" use-context target >/dev/null

  # The image's entrypoint is `celery-operator run`. Ports 8000/8080 may be taken on this
  # machine: later flags win, so the probe moves to a free loopback port.
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "+ celery-operator run ${args[*]} --metrics-port=0 --liveness=http://127.0.0.1:$port/healthz"
  env "${envs[@]}" KUBECONFIG="$kc" \
    celery-operator run "${args[@]}" --metrics-port=0 \
    --liveness="http://127.0.0.1:$port/healthz" >"$operator_log" 2>&1 &
  operator_pid=$!
  for _ in $(seq 1 120); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
      echo "operator is live (as $(kubectl --kubeconfig="$kc" auth whoami -o jsonpath='{.status.userInfo.username}'))"
      return 0
    fi
    kill -0 "$operator_pid" 2>/dev/null || { echo "the operator exited" >&2; return 1; }
    sleep 0.5
  done
  echo "the operator did not become live" >&2
  return 1
}

stop_operator() {
  [[ -n $operator_pid ]] || return 0
  echo "--- the operator stops, as its pod would when the Deployment goes"
  kill "$operator_pid" 2>/dev/null || true
  wait "$operator_pid" 2>/dev/null || true
  operator_pid=
  if grep -Eqi 'forbidden|\(403\)' "$operator_log"; then
    echo "the operator was denied a request:" >&2
    grep -Ei 'forbidden|\(403\)' "$operator_log" >&2
    return 1
  fi
}

for block in "$work"/*.sh; do
  action=${block##*/}; action=${action#*.}; action=${action%.sh}
  case $action in
    run)
      if grep -q 'helm uninstall' "$block"; then
        stop_operator  # its pod goes with the Deployment
      fi
      sed 's/^/+ /' "$block"
      # shellcheck disable=SC1090
      source "$block"
      ;;
    skip)
      echo "--- skipped, as the guide marks it:"
      sed 's/^/#   /' "$block"
      ;;
    start-operator)
      echo "--- instead of:"
      sed 's/^/#   /' "$block"
      start_operator
      ;;
    *)
      echo "unknown follow-install action '$action' in $DOC" >&2
      exit 1
      ;;
  esac
done

stop_operator
grep -q . "$operator_log" || { echo "the operator never ran" >&2; exit 1; }
echo "--- followed $DOC to the end"
