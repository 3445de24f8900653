#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only when missing.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v go >/dev/null || need+=(golang-go)
command -v lua5.4 >/dev/null || need+=(lua5.4)
# The dashboard's browser tests (headless Chromium through its WebDriver) and promtool for
# the chart's alert rule tests.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v promtool >/dev/null || need+=(prometheus)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# redis-server's Debian service is not what tests use: they start their own.
