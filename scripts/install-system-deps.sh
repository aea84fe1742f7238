#!/bin/sh
# Install the host programs the interop tests use as real peers: ping (iputils-ping),
# tcpdump, curl, iproute2 and redis-server; and what building packetdrill for the
# conformance tests needs (gcc, make, bison, flex). Only as root with apt-get; otherwise
# say what is missing (those tests then skip with a reason).
set -u
missing=""
command -v ping >/dev/null 2>&1 || missing="$missing iputils-ping"
command -v tcpdump >/dev/null 2>&1 || missing="$missing tcpdump"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v bison >/dev/null 2>&1 || missing="$missing bison"
command -v flex >/dev/null 2>&1 || missing="$missing flex"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null 2>&1 || echo "warning: could not install:$missing (interop tests needing them will skip)"
else
    echo "note: not root or no apt-get; missing:$missing (interop tests needing them will skip)"
fi
exit 0
