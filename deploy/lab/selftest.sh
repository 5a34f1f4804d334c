#!/bin/bash
# End-to-end check of the lab scripts themselves: up.sh (twice: the second must be a no-op),
# the cluster's shape, ssh as the bot does it, every nodectl action with its heal, down.sh and
# nothing left behind. Prints one line per check with its time; exits non-zero on the first
# failure (and tears the lab down). Usage: selftest.sh   (root; ~2 min)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

NODECTL=$LAB_DIR/nodectl.sh
PASSED=0
trap 'rc=$?; ((rc == 0)) || { log "selftest FAILED"; bash "$LAB_DIR/down.sh" || true; }' EXIT

check() { # check DESCRIPTION COMMAND...: run, time and report
  local what=$1 t
  shift
  t=$(now)
  "$@" >/dev/null || die "FAIL: $what"
  printf '  ok  %-62s %6ss\n' "$what" "$(since "$t")"
  PASSED=$((PASSED + 1))
}

bot_ssh() { # exactly the bot's settings: its key, pinned known_hosts, strict checking
  ssh -i "$LAB_STATE/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$LAB_STATE/ssh/known_hosts" \
    "root@$(node_ip "$1")" "${@:2}"
}

wait_on() { "$NODECTL" "$1" wait --timeout "$2" "${@:3}"; }

shape_ok() { # crm_mon text in a node: 3 online, quorum, one VIP per node, clone everywhere
  local out i
  out=$("$NODECTL" node1 status)
  grep -q 'partition with quorum' <<<"$out" &&
    grep -q 'Online: \[ node1 node2 node3 \]' <<<"$out" &&
    grep -qE 'Started: \[ node1 node2 node3 \]' <<<"$out" || return 1
  for i in 1 2 3; do grep -qE "virtual_ip_$i\s.*Started node$i" <<<"$out" || return 1; done
}

ssh_ok() {
  local n out
  for n in "${LAB_NODES[@]}"; do
    bot_ssh "$n" crm_mon --one-shot --inactive --output-as=xml | grep -q '<status code="0"' || return 1
    out=$(bot_ssh "$n" systemctl is-active corosync pacemaker pcsd) || return 1
    [[ $out == $'active\nactive\nactive' ]] || return 1
  done
}

is_active_fails_when_down() { # after a crash: one line per unit, non-zero exit
  local out rc=0
  out=$(bot_ssh node3 systemctl is-active corosync pacemaker pcsd) || rc=$?
  [[ $rc == 3 && $out == $'inactive\ninactive\nactive' ]]
}

no_vip_on() { ! "$NODECTL" "$1" exec ip -4 -o addr show dev eth0 | grep -q "$LAB_NET.10[1-3]/"; }
up_is_noop() { bash "$LAB_DIR/up.sh" 2>&1 | grep -q 'already up and healthy'; }
no_default_route() {
  local n
  for n in "${LAB_NODES[@]}"; do
    [[ -z $(ip -n "$(node_netns "$n")" route show default) ]] || return 1
  done
}
hostname_is_node() { [[ $("$NODECTL" "$1" exec hostname) == "$1" ]]; }

# Each step: the action, then wait for what must follow (never a fixed sleep).
standby_moves() { "$NODECTL" node2 standby && wait_on node1 30 standby:node2 running:virtual_ip_2@!node2; }
unstandby_heals() { "$NODECTL" node2 unstandby && wait_on node1 30 healthy; }
crash_seen() { "$NODECTL" node3 crash && wait_on node1 30 offline:node3; }
start_heals() { "$NODECTL" "$1" start && wait_on node1 60 healthy; }
break_dummy() { "$NODECTL" node2 break-resource loadbalancer-clone && wait_on node1 30 failures; }
break_vip() { "$NODECTL" node1 break-resource virtual_ip_1 && wait_on node1 30 failures; }
cleanup_heals() { bot_ssh node1 pcs resource cleanup && wait_on node1 30 healthy; }
stop_moves() { "$NODECTL" node3 stop && wait_on node1 60 offline:node3 running:virtual_ip_3@!node3; }
restart_corosync_heals() {
  "$NODECTL" node2 restart-corosync && wait_on node1 60 online:node2 && wait_on node1 60 healthy
}
partition_cuts_off() {
  "$NODECTL" node3 partition && wait_on node1 30 offline:node3 running:virtual_ip_3@!node3 &&
    wait_on node3 30 offline:node1,node2 no-quorum && bot_ssh node3 true
}
unpartition_heals() { "$NODECTL" node3 unpartition && wait_on node1 60 healthy; }
runbook_heals() {
  bot_ssh node2 'systemctl restart corosync && systemctl restart pcsd' && wait_on node1 60 healthy
}
pcs_remote_stop_start() {
  "$NODECTL" node1 exec pcs cluster stop node3 && wait_on node1 30 offline:node3 &&
    "$NODECTL" node1 exec pcs cluster start node3 && wait_on node1 60 healthy
}

nothing_left() {
  ! grep -q cblab /proc/mounts && ! ip netns list | grep -q cblab &&
    ! ip link show "$LAB_BRIDGE" &>/dev/null && [[ ! -e $LAB_STATE && ! -e $LAB_RUN ]]
}

main() {
  [[ $(id -u) == 0 ]] || die "run as root"
  log "selftest: bringing the lab up"
  LAB_FRESH=1 bash "$LAB_DIR/up.sh"
  check "up.sh again on a healthy lab is a no-op" up_is_noop
  check "crm_mon: 3 online, quorum, virtual_ip_N on nodeN, clone on all" shape_ok
  check "bot ssh: crm_mon XML + systemctl is-active on every node" ssh_ok
  check "no default route in any node" no_default_route
  check "standby node2: virtual_ip_2 leaves node2" standby_moves
  check "unstandby node2: healthy again" unstandby_heals
  check "crash node3: node3 OFFLINE" crash_seen
  check "crash node3: virtual_ip_3 on a survivor, quorum kept" \
    wait_on node1 30 running:virtual_ip_3@!node3 quorum
  check "crash node3: no VIP left on node3" no_vip_on node3
  check "crash node3: is-active prints per unit and exits 3" is_active_fails_when_down
  check "start node3: healthy" start_heals node3
  check "break-resource loadbalancer-clone on node2: failure shows" break_dummy
  check "pcs resource cleanup over ssh: healthy" cleanup_heals
  check "break-resource virtual_ip_1 on node1: failure shows" break_vip
  check "pcs resource cleanup over ssh: healthy" cleanup_heals
  check "stop node3: OFFLINE, virtual_ip_3 moved" stop_moves
  check "start node3 after stop: healthy" start_heals node3
  check "restart-corosync node2: healthy" restart_corosync_heals
  check "exec: hostname inside node2 is node2" hostname_is_node node2
  check "partition node3: OFFLINE for the others, alone without quorum, ssh answers" partition_cuts_off
  check "unpartition node3: healthy" unpartition_heals
  if [[ -e $(node_piddir node1)/pcsd.pid ]]; then
    check "runbook over ssh: restart corosync && restart pcsd (node2)" runbook_heals
    check "pcs through pcsd: pcs cluster stop/start node3 from node1" pcs_remote_stop_start
  fi
  check "down.sh" bash "$LAB_DIR/down.sh"
  check "nothing left (mounts, netns, bridge, files)" nothing_left
  check "down.sh again with nothing up" bash "$LAB_DIR/down.sh"
  trap - EXIT
  echo "$PASSED passed, 0 failed"
}

main "$@"
