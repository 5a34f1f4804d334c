#!/bin/bash
# systemctl stand-in for the cblab nodes. PID 1 on the lab machine is not systemd, so the real
# systemctl fails ("System has not been booted with systemd"), yet pcs, the runbook and the bot
# all drive daemons through systemctl. up.sh bind-mounts a two-line wrapper that execs this file
# over /usr/bin/systemctl inside each node's mount namespace only (the root namespace keeps the
# real one), and the wrapper execs this file by path so edits apply to running nodes at once.
#
# Supported: start stop restart status is-active is-enabled list-unit-files (plus no-op enable,
# disable, daemon-reload, reset-failed) for corosync, pacemaker, pcsd, pcsd-ruby and sshd (alias
# ssh). Dependencies follow the Debian units: starting pacemaker starts corosync; stopping or
# restarting corosync stops or restarts pacemaker too; pcsd needs pcsd-ruby.
# Daemons run in the foreground under setsid, with a clean environment (as systemd gives them),
# and their main PIDs go to /var/lib/cblab/nodes/<node>/pids/<unit>.pid.
set -euo pipefail
# The wrapper runs this file by its full path. Few subshells and helper programs on the way to
# `is-active`, which the bot runs on every node at every poll: it should cost what the real one
# does (a few ms), not 60 ms.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

read -r NODE </proc/sys/kernel/hostname # the node's own name (UTS namespace)
is_lab_node "$NODE" || { echo "systemctl (cblab shim): not inside a cblab node" >&2; exit 1; }
PIDDIR=$LAB_STATE/nodes/$NODE/pids # node_piddir
LOGDIR=$LAB_STATE/nodes/$NODE/log
NETINO=$(stat -L -c %i /proc/self/ns/net)
NODE_IP=$(node_ip "$NODE")
readonly UNITS=(corosync pacemaker pcsd pcsd-ruby sshd)
readonly BASE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  LANG=C.UTF-8 HOME=/root)
QUIET=0

describe() {
  case $1 in
    corosync) echo "Corosync Cluster Engine" ;;
    pacemaker) echo "Pacemaker High Availability Cluster Manager" ;;
    pcsd) echo "PCS GUI and remote configuration interface" ;;
    pcsd-ruby) echo "PCS GUI and remote configuration interface (Ruby)" ;;
    sshd) echo "OpenBSD Secure Shell server" ;;
  esac
}

# "corosync.service" -> corosync; ssh -> sshd; empty output for units we do not know.
unit_name() {
  local u=${1%.service}
  [[ $u == ssh ]] && u=sshd
  local k
  for k in "${UNITS[@]}"; do [[ $u == "$k" ]] && { echo "$u"; return; }; done
  return 0
}

main_pid() { cat "$PIDDIR/$1.pid" 2>/dev/null || true; }
is_active() {
  local pid=""
  read -r pid 2>/dev/null <"$PIDDIR/$1.pid" || true
  pid_alive_here "$pid"
}

# Start UNIT's daemon in its own session: `spawn UNIT [VAR=value ...] -- COMMAND ...`.
# The subshell closes every inherited descriptor above 2 (for example our own lock, or a pipe
# of whoever called us) so a daemon never keeps a caller waiting; `exec env ... setsid` keeps
# the PID, because a background child of a non-interactive shell is never a group leader and so
# setsid(1) does not fork.
spawn() {
  local unit=$1 cwd=/
  shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  [[ $unit == pcsd-ruby ]] && cwd=/var/lib/pcsd
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && { exec {fd}>&-; } 2>/dev/null
    done
    cd "$cwd"
    exec env -i "${BASE_ENV[@]}" "${envs[@]}" setsid "$@" </dev/null >>"$LOGDIR/$unit.out" 2>&1
  ) &
  echo "$!" >"$PIDDIR/$unit.pid"
}

# Poll CHECK (a command) until it succeeds; fail if UNIT's process dies or TIMEOUT (s) passes.
wait_ready() {
  local unit=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" &>/dev/null; do
    if ! is_active "$unit"; then
      echo "Job for $unit.service failed: the process exited. See $LOGDIR/$unit.out" >&2
      tail -n 20 "$LOGDIR/$unit.out" >&2 || true
      return 1
    fi
    ((SECONDS < deadline)) || { echo "Job for $unit.service timed out." >&2; return 1; }
    sleep 0.1
  done
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
pcsd_env() {
  # Same variables as the unit's EnvironmentFile, plus a bind address: pcsd would otherwise
  # listen on every address of the node, which is harmless but not what we want to rely on.
  grep -E '^[A-Za-z_][A-Za-z0-9_]*=' /etc/default/pcsd 2>/dev/null || true
  echo "PCSD_BIND_ADDR=$NODE_IP"
}

start_one() {
  local unit=$1
  is_active "$unit" && return 0
  case $unit in
    corosync)
      spawn corosync -- /usr/sbin/corosync -f
      wait_ready corosync 20 corosync-cmapctl -g totem.cluster_name
      ;;
    pacemaker)
      start_one corosync || return 1
      # Type=simple in the real unit: systemctl returns as soon as pacemakerd is running.
      spawn pacemaker PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none \
        -- /usr/sbin/pacemakerd
      ;;
    pcsd-ruby)
      local envs
      mapfile -t envs < <(pcsd_env)
      rm -f /run/pcsd-ruby.socket
      spawn pcsd-ruby "${envs[@]}" -- /usr/share/pcsd/pcsd
      wait_ready pcsd-ruby 60 test -S /run/pcsd-ruby.socket
      ;;
    pcsd)
      start_one pcsd-ruby || return 1
      local envs
      mapfile -t envs < <(pcsd_env)
      spawn pcsd "${envs[@]}" -- /usr/sbin/pcsd
      wait_ready pcsd 60 tcp_open "$NODE_IP" 2224
      ;;
    sshd)
      [[ -d /run/sshd ]] || mkdir -m 0755 /run/sshd # privilege separation dir
      spawn sshd -- /usr/sbin/sshd -D -f "$(node_dir "$NODE")/ssh/sshd_config" \
        -E "$LOGDIR/sshd.log"
      wait_ready sshd 10 tcp_open "$NODE_IP" 22
      ;;
  esac
}

# TERM the main PID and wait for its whole process tree; whatever is left after TIMEOUT gets
# KILL (pacemakerd stops its own daemons; pcsd's main process ends its workers).
# sshd is like systemd's ssh.service (KillMode=process): open sessions survive a stop.
stop_one() {
  local unit=$1 timeout pid
  case $unit in
    corosync) is_active pacemaker && stop_one pacemaker ;;
    pcsd-ruby) is_active pcsd && stop_one pcsd ;;
  esac
  pid=$(main_pid "$unit")
  if pid_alive_in "$pid" "$NETINO"; then
    case $unit in
      pacemaker) timeout=300 ;; # it first moves its resources away, as on a real host
      *) timeout=30 ;;
    esac
    local members=("$pid")
    [[ $unit == sshd ]] || mapfile -t members < <(pids_tree "$pid" "$NETINO")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pids_gone "$NETINO" "$timeout" "${members[@]}"; then
      echo "$unit.service: State 'stop-sigterm' timed out. Killing." >&2
      kill -KILL "${members[@]}" 2>/dev/null || true
      wait_pids_gone "$NETINO" 5 "${members[@]}" || true
    fi
  fi
  rm -f "$PIDDIR/$unit.pid"
  # pcsd-ruby is StopWhenUnneeded/PartOf=pcsd in the real units.
  if [[ $unit == pcsd ]]; then stop_one pcsd-ruby; fi
}

restart_one() {
  local unit=$1 pcmk_was_active=0
  [[ $unit == corosync ]] && is_active pacemaker && pcmk_was_active=1
  stop_one "$unit"
  start_one "$unit" || return 1
  # Requires=corosync.service: restarting corosync restarts pacemaker as well.
  if ((pcmk_was_active)); then start_one pacemaker; fi
}

print_status() {
  local unit=$1 pid dot=○ active="inactive (dead)"
  pid=$(main_pid "$unit")
  if is_active "$unit"; then
    dot=●
    active="active (running) since $(ps -o lstart= -p "$pid" | sed 's/  */ /g')"
  fi
  echo "$dot $unit.service - $(describe "$unit")"
  echo "     Loaded: loaded (/lib/systemd/system/$unit.service; enabled; preset: enabled)"
  echo "     Active: $active"
  if is_active "$unit"; then echo "   Main PID: $pid ($(cat "/proc/$pid/comm" 2>/dev/null))"; fi
}

list_unit_files() {
  local u
  printf '%-40s %-15s %s\n' "UNIT FILE" STATE "VENDOR PRESET"
  for u in "${UNITS[@]}"; do printf '%-40s %-15s %s\n' "$u.service" enabled enabled; done
  printf '%-40s %-15s %s\n' ssh.service enabled enabled
  printf '\n%s unit files listed.\n' "$((${#UNITS[@]} + 1))"
}

# Serialise commands that change state, so pcsd and a test cannot start the same daemon twice.
take_lock() {
  local fd
  exec {fd}>"$PIDDIR/.lock"
  flock "$fd"
}

main() {
  local cmd="" args=() a
  for a in "$@"; do
    case $a in
      -q | --quiet) QUIET=1 ;;
      -*) ;; # --no-pager, --full, --no-block, --type=service, ...: nothing to do here
      *) if [[ -z $cmd ]]; then cmd=$a; else args+=("$a"); fi ;;
    esac
  done
  local units=() u rc=0
  for a in "${args[@]}"; do units+=("$(unit_name "$a")"); done
  case $cmd in
    start | stop | restart)
      take_lock
      for i in "${!units[@]}"; do
        u=${units[$i]}
        if [[ -z $u ]]; then
          echo "Failed to $cmd ${args[$i]}: Unit ${args[$i]%.service}.service not found." >&2
          rc=5
          continue
        fi
        "${cmd}_one" "$u" || rc=1
      done
      ;;
    is-active)
      for u in "${units[@]}"; do
        if [[ -n $u ]] && is_active "$u"; then a=active; else a=inactive; rc=3; fi
        ((QUIET)) || echo "$a"
      done
      ;;
    is-enabled)
      for i in "${!units[@]}"; do
        if [[ -n ${units[$i]} ]]; then
          ((QUIET)) || echo enabled
        else
          echo "Failed to get unit file state for ${args[$i]}: No such file or directory" >&2
          rc=1
        fi
      done
      ;;
    status)
      for i in "${!units[@]}"; do
        u=${units[$i]}
        if [[ -z $u ]]; then echo "Unit ${args[$i]} could not be found." >&2; rc=4; continue; fi
        ((i > 0)) && echo
        print_status "$u"
        is_active "$u" || rc=3
      done
      ;;
    list-unit-files) list_unit_files ;;
    enable | disable | daemon-reload | reset-failed) ;; # the lab's units are always "enabled"
    *)
      echo "systemctl (cblab shim): unsupported command '$cmd'" >&2
      rc=1
      ;;
  esac
  return "$rc"
}

main "$@"
