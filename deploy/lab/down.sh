#!/bin/bash
# Tear down the cblab lab and leave nothing behind: end the lab's processes (by recorded PID
# and by membership of a node's namespaces, never by name), unmount the namespace handles,
# delete the network namespaces, veths and bridge, the ssh drop-in and /var/lib/cblab.
# Safe to run when nothing (or only part of a lab) is up. Ends by checking that nothing is left.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

T0=$(now)
KILLED=() # every PID signalled, to wait for PID 1 to reap them (it does so about once a second)

# Network-namespace inode of NODE: from the live handle, else the one up.sh recorded.
netino_of() {
  local ino
  ino=$(node_netns_ino "$1")
  [[ -n $ino ]] || ino=$(cat "$(node_dir "$1")/netns.ino" 2>/dev/null || true)
  echo "$ino"
}

recorded_pid() { cat "$(node_piddir "$1")/$2.pid" 2>/dev/null || true; }

# Signal the recorded main PID of UNIT on NODE if it is still the lab's process.
signal_unit() {
  local sig=$1 node=$2 unit=$3 ino pid
  ino=$(netino_of "$node")
  pid=$(recorded_pid "$node" "$unit")
  if pid_alive_in "$pid" "$ino"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    KILLED+=("$pid")
  fi
}

# Every live process in any node's network namespace.
lab_pids() {
  local n
  for n in "${LAB_NODES[@]}"; do pids_in_netns "$(netino_of "$n")"; done
}

lab_pids_alive() { [[ -n $(lab_pids) ]]; }

stop_processes() {
  local n unit pid deadline pids=()
  # pcsd first, and only its main PIDs: TERM on pcsd's workers makes the main process
  # respawn them, which once made teardown take 19 s.
  for n in "${LAB_NODES[@]}"; do
    for unit in pcsd pcsd-ruby sshd; do signal_unit TERM "$n" "$unit"; done
  done
  # The cluster itself is thrown away, so there is no point in a graceful pacemaker stop
  # (resources would only move between nodes that are all about to go): KILL it and corosync.
  for n in "${LAB_NODES[@]}"; do
    pid=$(recorded_pid "$n" pacemaker)
    [[ -n $pid ]] && mapfile -t -O "${#pids[@]}" pids < <(pids_tree "$pid" "$(netino_of "$n")")
    pid=$(recorded_pid "$n" corosync)
    pid_alive_in "$pid" "$(netino_of "$n")" && pids+=("$pid")
  done
  if ((${#pids[@]})); then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  KILLED+=("${pids[@]}")
  # Let pcsd's main processes end their own workers before anything else is signalled.
  for n in "${LAB_NODES[@]}"; do
    wait_pids_gone "$(netino_of "$n")" 5 "$(recorded_pid "$n" pcsd)" \
      "$(recorded_pid "$n" pcsd-ruby)" || true
  done
  # Then everything else in the nodes (ssh sessions, stray agents, leftovers of a crashed
  # pcsd): TERM, and KILL whatever still runs after a short grace period.
  deadline=$((SECONDS + 3))
  while lab_pids_alive; do
    mapfile -t pids < <(lab_pids)
    KILLED+=("${pids[@]}")
    if ((SECONDS < deadline)); then
      kill -TERM "${pids[@]}" 2>/dev/null || true
    elif ((SECONDS < deadline + 5)); then
      kill -KILL "${pids[@]}" 2>/dev/null || true
    else
      die "lab processes survive SIGKILL: ${pids[*]}"
    fi
    sleep 0.2
  done
}

remove_namespaces() {
  local n h
  # Mount and UTS namespaces live on only through these bind-mounted handles.
  for h in "$LAB_NSDIR"/*.mnt "$LAB_NSDIR"/*.uts; do
    [[ -e $h ]] || continue
    if grep -q " $h " /proc/mounts; then umount "$h"; fi
  done
  if grep -q " $LAB_NSDIR " /proc/mounts; then umount "$LAB_NSDIR"; fi
  rm -rf "$LAB_RUN"
  for n in "${LAB_NODES[@]}"; do
    # Delete the veth pair first: `ip netns delete` only drops the handle and the kernel
    # destroys the namespace (and with it the root end of the veth) a moment later, which
    # would race with the checks below.
    if ip link show "cblab-n$(node_num "$n")" &>/dev/null; then
      ip link delete "cblab-n$(node_num "$n")" 2>/dev/null || true
    fi
    if [[ -e /run/netns/$(node_netns "$n") ]]; then ip netns delete "$(node_netns "$n")"; fi
  done
  if ip link show "$LAB_BRIDGE" &>/dev/null; then ip link delete "$LAB_BRIDGE"; fi
}

# Dead processes stay in the process table as zombies until PID 1 reaps them; wait for that
# so that `ps` shows nothing of the lab afterwards. Only a warning if PID 1 never reaps.
wait_reaped() {
  local deadline=$((SECONDS + 5)) p left
  while :; do
    left=()
    for p in "${KILLED[@]}"; do [[ -n $p && -e /proc/$p ]] && left+=("$p"); done
    ((${#left[@]})) || return 0
    if ((SECONDS >= deadline)); then
      log "warning: not yet reaped by PID 1 (zombies): ${left[*]}"
      return 0
    fi
    sleep 0.1
  done
}

verify_clean() {
  local left=()
  grep -q cblab /proc/mounts && left+=("mounts: $(grep cblab /proc/mounts | awk '{print $2}' | xargs)")
  ip netns list 2>/dev/null | grep -q '^cblab-' && left+=("netns: $(ip netns list | grep '^cblab-' | xargs)")
  ip -o link show 2>/dev/null | grep -q 'cblab-' && left+=("links: $(ip -o link show | grep -o 'cblab-[a-z0-9]*' | xargs)")
  [[ -e $LAB_STATE || -e $LAB_RUN || -e $LAB_SSH_DROPIN ]] && left+=("files under $LAB_STATE, $LAB_RUN or $LAB_SSH_DROPIN")
  ((${#left[@]} == 0)) || die "left behind: ${left[*]}"
}

main() {
  [[ $(id -u) == 0 ]] || die "run as root"
  if ! lab_exists && [[ ! -e $LAB_SSH_DROPIN ]]; then
    verify_clean
    log "nothing to tear down ($(since "$T0") s)"
    return
  fi
  local t steps
  t=$(now)
  stop_processes
  steps="processes $(since "$t")s"
  t=$(now)
  remove_namespaces
  rm -f "$LAB_SSH_DROPIN"
  rm -rf "$LAB_STATE"
  steps+=", namespaces+files $(since "$t")s"
  t=$(now)
  wait_reaped
  steps+=", reaping $(since "$t")s"
  verify_clean
  log "lab down in $(since "$T0") s ($steps); no cblab mounts, namespaces, links, files or processes left"
}

main "$@"
