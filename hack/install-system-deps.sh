#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v go >/dev/null || need+=(golang-go)
command -v lua5.4 >/dev/null || need+=(lua5.4)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || need+=(postgresql)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# redis-server's Debian service is not what tests use: they start their own.

# rabbitmq-server: tests start their own nodes (devstack.RabbitMQServer). The package's
# postinst would start the system service: a policy-rc.d that denies it while installing.
if [[ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  echo "installing rabbitmq-server" >&2
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    own_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    rabbitmq-server >/dev/null
  if [[ -n $own_policy ]]; then $SUDO rm -f "$policy"; fi
  # Where systemd runs, keep the service from starting at boot too.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
  fi
fi
