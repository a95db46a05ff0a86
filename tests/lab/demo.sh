#!/usr/bin/env bash
# vlanguard demo lab: a router in front of an infusion-pump segment, with
# real traffic, all inside network namespaces this script creates and
# removes (whatever happens).
#
#   vgd-nurse ── vg-up ┐                     ┌─ pump0  vgd-pump  (pump-icu-07)
#   10.30.1.1         [vgd-router + XDP] vg-pumps ── br0 (vgd-sw)
#                      10.30.0.1 / 10.110.0.1  └─ rogue0 vgd-rogue (not in the inventory)
#
# Usage: demo.sh VLANGUARD_BINARY POLICY_FILE
set -euo pipefail

VG=${1:?usage: demo.sh VLANGUARD_BINARY POLICY_FILE}
POLICY=${2:?usage: demo.sh VLANGUARD_BINARY POLICY_FILE}
NAMESPACES=(vgd-router vgd-nurse vgd-sw vgd-pump vgd-rogue)
LOG=$(mktemp /tmp/vlanguard-demo.XXXXXX)
# `ip netns exec` remounts /sys, so pins go to a BPF filesystem of the
# demo's own, mounted outside /sys.
RUN=/run/vlanguard-demo
BPFFS=$RUN/bpf
PINS=$BPFFS/vlanguard
SOCKET=$RUN/vlanguard.sock
# The demo edits a copy of the policy, never the example itself.
LIVE_POLICY=$RUN/policy.toml
DAEMON=
FAILED=0

cleanup() {
    if [[ -n $DAEMON ]] && kill -0 "$DAEMON" 2>/dev/null; then
        kill -TERM "$DAEMON" 2>/dev/null || true
        wait "$DAEMON" 2>/dev/null || true
    fi
    [[ -d $PINS ]] && "$VG" --socket "$SOCKET" detach --pin-dir "$PINS" >/dev/null 2>&1 || true
    mountpoint -q "$BPFFS" && umount "$BPFFS" || true
    mountpoint -q "$BPFFS" || rm -rf "$RUN"
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_daemon() {
    ip netns exec vgd-router "$VG" --socket "$SOCKET" run --config "$LIVE_POLICY" \
        --pin-dir "$PINS" --audit-log "$RUN/audit.log" \
        --iface vg-up --iface vg-pumps >"$LOG" 2>&1 &
    DAEMON=$!
    for _ in $(seq 50); do
        grep -q "applied as generation" "$LOG" && return 0
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.1
    done
    echo "vlanguard did not start:"; cat "$LOG"; exit 1
}

traffic() {
    expect ok      "nurse station pings pump-icu-07 (allow_in icmp 8)" \
        ip netns exec vgd-nurse ping -c 3 -i 0.2 -W 1 10.110.0.7
    expect blocked "nurse station opens telnet (tcp/23) on the pump" \
        ip netns exec vgd-nurse timeout 2 bash -c 'exec 3<>/dev/tcp/10.110.0.7/23'
    expect blocked "pump-icu-07 pings a nurse station (no allow_out)" \
        ip netns exec vgd-pump ping -c 3 -i 0.2 -W 1 10.30.1.1
    expect blocked "unknown host 10.110.0.99 on the pump VLAN reaches out" \
        ip netns exec vgd-rogue ping -c 3 -i 0.2 -W 1 10.30.1.1
    expect blocked "nurse station pings the unknown host" \
        ip netns exec vgd-nurse ping -c 2 -i 0.2 -W 1 10.110.0.99
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
expect() { # expect ok|blocked DESCRIPTION COMMAND...
    local want=$1 what=$2; shift 2
    if "$@" >/dev/null 2>&1; then got=ok; else got=blocked; fi
    if [[ $got == "$want" ]]; then
        printf '  \033[32mas expected\033[0m  %-58s %s\n' "$what" "$got"
    else
        printf '  \033[31mUNEXPECTED\033[0m   %-58s %s (wanted %s)\n' "$what" "$got" "$want"
        FAILED=1
    fi
}

step "building the lab"
for ns in "${NAMESPACES[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add vg-up netns vgd-router type veth peer name nurse0 netns vgd-nurse
ip link add vg-pumps netns vgd-router type veth peer name sw-up netns vgd-sw
ip link add pump0 netns vgd-pump address 02:00:00:00:00:07 type veth peer name sw-pump netns vgd-sw
ip link add rogue0 netns vgd-rogue type veth peer name sw-rogue netns vgd-sw
ip -n vgd-sw link add br0 type bridge
for port in sw-up sw-pump sw-rogue; do ip -n vgd-sw link set "$port" master br0 up; done
ip -n vgd-sw link set br0 up
ip netns exec vgd-router sysctl -qw net.ipv4.ip_forward=1
ip -n vgd-router addr add 10.30.0.1/16 dev vg-up
ip -n vgd-router addr add 10.110.0.1/24 dev vg-pumps
ip -n vgd-nurse addr add 10.30.1.1/16 dev nurse0
ip -n vgd-pump addr add 10.110.0.7/24 dev pump0
ip -n vgd-rogue addr add 10.110.0.99/24 dev rogue0
for pair in vgd-router:vg-up vgd-router:vg-pumps vgd-nurse:nurse0 vgd-pump:pump0 vgd-rogue:rogue0; do
    ip -n "${pair%%:*}" link set "${pair#*:}" up
done
ip -n vgd-nurse route add default via 10.30.0.1
ip -n vgd-pump route add default via 10.110.0.1
ip -n vgd-rogue route add default via 10.110.0.1
echo "  namespaces: ${NAMESPACES[*]}"

mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"
cp "$POLICY" "$LIVE_POLICY"
cli() { "$VG" --socket "$SOCKET" "$@"; }

step "starting vlanguard on the router (policy $POLICY)"
start_daemon
sed 's/^/  /' "$LOG"

step "traffic"
traffic

step "vlanguard status, vlanguard stats"
cli status | sed 's/^/  /'
echo
cli stats | sed 's/^/  /'

step "an operator lets the pump ping nurse stations, then revokes it"
# Until flow tracking lands, the reply needs its own rule.
cli allow pump-icu-07 out nurse-stations --proto icmp --icmp-type 8 | sed 's/^/  /'
cli allow pump-icu-07 in nurse-stations --proto icmp --icmp-type 0 | sed 's/^/  /'
expect ok      "pump-icu-07 pings a nurse station" \
    ip netns exec vgd-pump ping -c 3 -i 0.2 -W 1 10.30.1.1
cli revoke pump-icu-07 out nurse-stations --proto icmp --icmp-type 8 | sed 's/^/  /'
cli revoke pump-icu-07 in nurse-stations --proto icmp --icmp-type 0 | sed 's/^/  /'
expect blocked "and is stopped again" \
    ip netns exec vgd-pump ping -c 3 -i 0.2 -W 1 10.30.1.1
echo "  audit log:"
sed 's/^/    /' "$RUN/audit.log"

step "stopping the daemon: the filter keeps enforcing"
kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=
sed 's/^/  /' "$LOG"
traffic

step "a new daemon adopts the pinned filter"
start_daemon
sed 's/^/  /' "$LOG"
expect ok      "nurse station pings pump-icu-07" \
    ip netns exec vgd-nurse ping -c 2 -i 0.2 -W 1 10.110.0.7

step "vlanguard detach: the daemon removes the filter and stops"
cli detach | sed 's/^/  /'
wait "$DAEMON" || true
DAEMON=
[[ ! -e $PINS ]] && echo "  no pins left in $BPFFS"
expect ok      "telnet to the pump now only meets the pump's closed port" \
    ip netns exec vgd-nurse timeout 2 bash -c 'exec 3<>/dev/tcp/10.110.0.7/23 || [[ $? == 1 ]]'
exit $FAILED
