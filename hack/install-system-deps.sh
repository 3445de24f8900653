#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only when missing.
#
# Their services are not what the project uses: tests and the demo start their own
# redis-server, RabbitMQ nodes (devstack.RabbitMQServer) and PostgreSQL clusters
# (devstack.PostgresServer). Several packages' postinst would start a system service
# (rabbitmq-server, postgresql, prometheus): a policy-rc.d denies that while installing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v go >/dev/null || need+=(golang-go)
command -v lua5.4 >/dev/null || need+=(lua5.4)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || need+=(postgresql)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || need+=(rabbitmq-server)
# The dashboard's browser tests (headless Chromium through its WebDriver) and promtool for
# the chart's alert rule tests.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v promtool >/dev/null || need+=(prometheus)
[[ ${#need[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
echo "installing ${need[*]}" >&2
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  own_policy=1
fi
trap '[[ -n $own_policy ]] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  "${need[@]}" >/dev/null
# Where systemd runs, keep those services from starting at boot too.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  for service in rabbitmq-server postgresql prometheus; do
    $SUDO systemctl disable --now "$service" >/dev/null 2>&1 || true
  done
fi
