#!/bin/bash
# Break and heal one cblab node from the root namespace (tests use this; it enters the node's
# namespaces itself). Usage: nodectl.sh NODE ACTION [ARGS...]
#
#   standby | unstandby        set/clear the node's permanent standby attribute (as pcs node standby)
#   crash                      power cut: SIGKILL corosync and every pacemaker daemon, drop the
#                              node's VIP addresses and Dummy state (sshd and pcsd stay up)
#   start                      heal: start corosync + pacemaker (and sshd if it is not running)
#   stop                       clean stop: pacemaker first (resources move away), then corosync
#   restart-corosync           systemctl restart corosync (restarts pacemaker too, like systemd)
#   partition                  cut the node off from its peers' Corosync traffic (drop knet's UDP
#                              port inside the node only); sshd, pcsd and its daemons keep running
#   unpartition                undo partition (a no-op when the node is not partitioned)
#   break-resource RESOURCE    make RESOURCE's next monitor on this node fail: delete its VIP
#                              address (IPaddr2) or its Dummy state file (e.g. loadbalancer)
#   exec CMD [ARGS...]         run a command inside the node
#   status                     crm_mon -1 as seen from the node
#   wait CONDITION...          poll crm_mon on the node until every condition holds (labwait.py;
#                              e.g. `wait --timeout 30 offline:node3 running:virtual_ip_3@!node3`)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# True if pacemaker answers on NODE (crm_mon can connect).
pcmk_up() { lab_exec "$1" crm_mon -1 --output-as=xml &>/dev/null; }

# A node where pacemaker runs, preferring NODE itself: attribute changes need a live CIB.
cib_node() {
  local n
  for n in "$1" "${LAB_NODES[@]}"; do pcmk_up "$n" && { echo "$n"; return; }; done
  die "pacemaker is not running on any node"
}

set_standby() {
  local node=$1 value=$2 via
  via=$(cib_node "$node")
  lab_exec "$via" crm_attribute --node "$node" --name standby --update "$value" \
    --lifetime forever
}

# Delete every address on the node's eth0 except its own: those are VIPs that IPaddr2 added.
drop_vips() {
  local node=$1 own addr
  own="$(node_ip "$node")/24"
  for addr in $(lab_exec "$node" ip -4 -o addr show dev eth0 | awk '{print $4}'); do
    [[ $addr == "$own" ]] || lab_exec "$node" ip addr del "$addr" dev eth0
  done
}

crash() {
  local node=$1 netino pids=() p
  netino=$(node_netns_ino "$node")
  [[ -n $netino ]] || die "$node does not exist (is the lab up?)"
  local piddir
  piddir=$(node_piddir "$node")
  # pacemakerd, its six daemons and any resource agent they are running: pacemakerd's tree.
  p=$(cat "$piddir/pacemaker.pid" 2>/dev/null || true)
  mapfile -t pids < <(pids_tree "$p" "$netino")
  # Plus corosync and any cluster daemon whose parent had already died (no longer in the
  # tree), found by binary among the processes of this node's namespace.
  for p in $(pids_in_netns "$netino"); do
    case $(readlink "/proc/$p/exe" 2>/dev/null) in
      /usr/sbin/corosync | /usr/sbin/pacemakerd | /usr/lib/pacemaker/*) pids+=("$p") ;;
    esac
  done
  if ((${#pids[@]})); then mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -un); fi
  # One kill(1) call, so they all die at the same instant, as in a power cut.
  if ((${#pids[@]})); then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  wait_pids_gone "$netino" 10 "${pids[@]}" || die "some of ${pids[*]} survived SIGKILL"
  rm -f "$piddir/corosync.pid" "$piddir/pacemaker.pid"
  # Without fencing the VIPs would stay configured here and be duplicated once they fail over.
  drop_vips "$node"
  lab_exec "$node" sh -c 'rm -f /run/Dummy-*.state'
  log "$node crashed (killed ${#pids[@]} processes: ${pids[*]})"
}

# Make RESOURCE's monitor on NODE fail, the way the real fault would look to the agent.
break_resource() {
  local node=$1 res=$2 ip state
  if ip=$(lab_exec "$node" crm_resource --resource "$res" --get-parameter ip 2>/dev/null) &&
    [[ -n $ip ]]; then
    lab_exec "$node" ip -4 -o addr show dev eth0 | grep -q " $ip/" ||
      die "$res's address $ip is not on $node"
    lab_exec "$node" ip addr del "$ip/24" dev eth0
    log "$node: deleted $res's address $ip"
    return
  fi
  # ocf:pacemaker:Dummy keeps /run/Dummy-<primitive>.state; a clone is named <primitive>-clone.
  for state in "/run/Dummy-$res.state" "/run/Dummy-${res%-clone}.state"; do
    if lab_exec "$node" test -e "$state"; then
      lab_exec "$node" rm -f "$state"
      log "$node: deleted $state"
      return
    fi
  done
  die "$res is neither an IPaddr2 resource nor a Dummy running on $node"
}

# knet's port: corosync.conf sets no mcastport, so Corosync's default (5405) for every link.
readonly KNET_PORT=5405
readonly PARTITION_TABLE=cblab_partition

# Drop Corosync's UDP both ways inside NODE's network namespace only. The peers then see it leave
# the membership (as after a crash), while it keeps running Pacemaker alone, answering ssh.
partition() {
  local node=$1
  command -v nft >/dev/null || die "nft is missing (up.sh installs nftables)"
  unpartition "$node"
  lab_exec "$node" nft -f - <<EOF
table inet $PARTITION_TABLE {
  chain input { type filter hook input priority 0; policy accept; udp dport $KNET_PORT drop; udp sport $KNET_PORT drop; }
  chain output { type filter hook output priority 0; policy accept; udp dport $KNET_PORT drop; udp sport $KNET_PORT drop; }
}
EOF
  log "$node: Corosync's UDP port $KNET_PORT dropped both ways (ssh unaffected)"
}

unpartition() {
  local node=$1
  command -v nft >/dev/null || return 0
  if lab_exec "$node" nft list table inet "$PARTITION_TABLE" &>/dev/null; then
    lab_exec "$node" nft delete table inet "$PARTITION_TABLE"
    log "$node: Corosync traffic allowed again"
  fi
}

main() {
  (($# >= 2)) || usage
  local node=$1 action=$2
  shift 2
  is_lab_node "$node" || die "unknown node '$node' (expected one of: ${LAB_NODES[*]})"
  [[ -e $LAB_NSDIR/$node.mnt ]] || die "$node is not up (run deploy/lab/up.sh)"
  case $action in
    standby) set_standby "$node" on ;;
    unstandby) set_standby "$node" off ;;
    crash) crash "$node" ;;
    start) lab_exec "$node" systemctl start sshd pacemaker ;;
    stop) lab_exec "$node" systemctl stop corosync ;;
    restart-corosync) lab_exec "$node" systemctl restart corosync ;;
    partition) partition "$node" ;;
    unpartition) unpartition "$node" ;;
    break-resource)
      (($# == 1)) || usage
      break_resource "$node" "$1"
      ;;
    exec)
      (($#)) || usage
      lab_exec "$node" "$@"
      ;;
    status) lab_exec "$node" crm_mon -1 ;;
    wait)
      # Debian's python3 (up.sh installs it); the caller's may be a venv or a pyenv shim.
      local py=/usr/bin/python3
      [[ -x $py ]] || py=python3
      exec "$py" "$LAB_DIR/labwait.py" --node "$node" "$@"
      ;;
    *) usage ;;
  esac
}

main "$@"
