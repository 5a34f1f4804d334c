# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared names and helpers for the cblab scripts (up.sh, down.sh, nodectl.sh, systemctl-shim.sh).
# Sourced, never run. Every path and name the lab uses is defined here once, so down.sh removes
# exactly what up.sh made. Paths are fixed on purpose: the systemctl shim runs inside the nodes
# (started by pcsd or over ssh) and must find the same state without any environment.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly LAB_DIR
readonly LAB_STATE=/var/lib/cblab          # keys, per-node configs, pid files, bot config
readonly LAB_RUN=/run/cblab                # namespace handles (gone after a reboot, like the ns)
readonly LAB_NSDIR=$LAB_RUN/ns
readonly LAB_BRIDGE=cblab-br0
readonly LAB_NET=10.224.77                 # the lab's only subnet: .1 bridge, .11-.13 nodes, .101-.103 VIPs
readonly LAB_NODES=(node1 node2 node3)
readonly LAB_SSH_DROPIN=/etc/ssh/ssh_config.d/cblab.conf
readonly LAB_PW_DEFAULT=cblab              # hacluster password inside the nodes only
# Paths a node sees privately: "<path in the node>:<dir or file under the node's state dir>".
readonly LAB_NODE_BINDS=(
  /etc/corosync:etc-corosync
  /etc/pacemaker:etc-pacemaker
  /var/lib/corosync:var-lib-corosync
  /var/lib/pacemaker:var-lib-pacemaker
  /var/log/corosync:var-log-corosync
  /var/log/pacemaker:var-log-pacemaker
  /var/lib/pcsd:var-lib-pcsd
  /var/log/pcsd:var-log-pcsd
  /etc/hosts:hosts
  /etc/hostname:hostname
  /etc/shadow:shadow
  /root:root-home
)

log() { printf '[cblab %(%T)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_lab_node() {
  local n
  for n in "${LAB_NODES[@]}"; do [[ $1 == "$n" ]] && return 0; done
  return 1
}

node_num() { echo "${1#node}"; }                     # node2 -> 2
node_ip() { echo "$LAB_NET.$((10 + ${1#node}))"; }   # node2 -> 10.224.77.12
vip_ip() { echo "$LAB_NET.$((100 + $1))"; }          # 2 -> 10.224.77.102
node_netns() { echo "cblab-$1"; }                    # handle is /run/netns/cblab-node2
node_dir() { echo "$LAB_STATE/nodes/$1"; }
node_piddir() { echo "$LAB_STATE/nodes/$1/pids"; }   # shared by root ns and the node (not under /run)

# Run a command inside NODE's network, mount and UTS namespaces. `ip netns exec` is not enough:
# it unshares a fresh mount namespace on every call, so the node's private mounts would be lost.
lab_exec() {
  local node=$1
  shift
  nsenter --net="/run/netns/$(node_netns "$node")" --mount="$LAB_NSDIR/$node.mnt" \
    --uts="$LAB_NSDIR/$node.uts" -- "$@"
}

# Inode of NODE's network namespace, or nothing if it is gone. Used to tell the lab's processes
# from everything else on the machine: there is no PID namespace, so PIDs alone could be reused.
node_netns_ino() {
  stat -L -c %i "/run/netns/$(node_netns "$1")" 2>/dev/null || true
}

# True if PID is a live (not zombie) process in the network namespace with inode NETINO.
# PID 1 here (process_api) reaps orphans only about once a second, so killed daemons linger as
# zombies for a moment; they must count as dead.
pid_alive_in() {
  local pid=$1 netino=$2 state ino
  [[ $pid =~ ^[0-9]+$ && -n $netino ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]] || return 1
  ino=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || return 1
  [[ $ino == "$netino" ]]
}

# The same for a process in the caller's own network namespace, with bash builtins only (no
# awk, no stat): the systemctl shim's is-active runs this on every poll of the bot, and the
# forks cost ~50 ms a call, ten times what a real `systemctl is-active` takes.
pid_alive_here() {
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
  stat=${stat##*) } # the fields after "PID (COMM) ": the state comes first
  [[ -n $stat && ${stat:0:1} != [ZX] ]] || return 1
  [[ /proc/$pid/ns/net -ef /proc/$$/ns/net ]]
}

# Every live process whose network namespace has inode NETINO (one PID per line). One `find`
# over /proc instead of a stat per process: this runs in loops while daemons exit.
pids_in_netns() {
  local netino=$1 p
  [[ -n $netino ]] || return 0
  find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/ns/net' -lname "net:\\[$netino\\]" \
    2>/dev/null | cut -d/ -f3 | while read -r p; do
    pid_alive_in "$p" "$netino" && echo "$p"
  done
  return 0
}

# PID and all its live descendants in NETINO. pacemakerd's six daemons each call setsid(), so
# a session or process group does not cover them; the parent links do (agents included).
pids_tree() {
  local root=$1 netino=$2
  [[ $root =~ ^[0-9]+$ ]] || return 0
  ps -e -o pid=,ppid= | awk -v r="$root" '
    { kids[$2] = kids[$2] " " $1 }
    END {
      todo[1] = r; n = 1
      while (n > 0) {
        p = todo[n--]; print p
        c = split(kids[p], a, " ")
        for (i = 1; i <= c; i++) todo[++n] = a[i]
      }
    }' | while read -r p; do
    pid_alive_in "$p" "$netino" && echo "$p"
  done
  return 0
}

# Wait until none of the given PIDs is alive in NETINO; false on timeout (seconds).
wait_pids_gone() {
  local netino=$1 timeout=$2 p alive
  shift 2
  local deadline=$((SECONDS + timeout))
  while :; do
    alive=0
    for p in "$@"; do pid_alive_in "$p" "$netino" && alive=1 && break; done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# True if the lab's namespaces exist, i.e. up.sh ran (maybe partly) and down.sh did not.
lab_exists() {
  local n
  ip link show "$LAB_BRIDGE" &>/dev/null && return 0
  for n in "${LAB_NODES[@]}"; do
    [[ -e /run/netns/$(node_netns "$n") || -e $LAB_NSDIR/$n.mnt ]] && return 0
  done
  [[ -d $LAB_STATE || -d $LAB_RUN ]]
}

now() { echo "$EPOCHREALTIME"; }

# ssh_node NODE CMD...: run CMD on NODE over ssh as the bot does (its key, pinned known_hosts).
ssh_node() {
  ssh -i "$LAB_STATE/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$LAB_STATE/ssh/known_hosts" \
    -o ConnectTimeout=5 "root@$(node_ip "$1")" "${@:2}"
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
