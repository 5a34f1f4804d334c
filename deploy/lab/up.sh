#!/bin/bash
# Bring up the cblab lab: a real 3-node Pacemaker/Corosync cluster shaped like prod-haproxy
# (three IPaddr2 VIPs, one per node, and loadbalancer-clone everywhere) on this one machine.
# Each node is a network namespace plus private mount and UTS namespaces on a lab-only bridge
# (10.224.77.0/24, no default route anywhere); sshd, corosync, pacemaker and pcsd run inside.
# See README.md beside this file. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) on Linux.
#
# Environment:
#   LAB_TOKEN_MS=1000   corosync totem token (ms). 1000 detects a dead node in ~3.5 s; the
#                       corosync default 3000 takes ~8 s, as on real hosts.
#   LAB_PCSD=1          run pcsd in every node and `pcs host auth` them (0: skip, faster/lighter)
#   LAB_FRESH=0         1: rebuild even if a healthy lab with the same settings is already up
#   LAB_KEEP_ON_FAIL=0  1: leave a failed bring-up in place for debugging (default: tear down)
#   LAB_HACLUSTER_PASSWORD=cblab   password of hacluster inside the nodes (for pcs host auth)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

TOKEN_MS=${LAB_TOKEN_MS:-1000}
PCSD=${LAB_PCSD:-1}
PASSWORD=${LAB_HACLUSTER_PASSWORD:-$LAB_PW_DEFAULT}
readonly CLUSTER_NAME=cblab
readonly PACKAGES=(pacemaker pacemaker-cli-utils corosync pcs resource-agents openssh-server
  openssh-client iputils-arping iproute2 util-linux procps openssl python3 nftables)
readonly PYTHON=/usr/bin/python3 # Debian's; the caller's python may be a venv or pyenv shim
PARAMS="token_ms=$TOKEN_MS pcsd=$PCSD"

T0=$(now)
TIMINGS=()
PHASE=""
PHASE_T=""
phase() {
  [[ -n $PHASE ]] && TIMINGS+=("$PHASE $(since "$PHASE_T")")
  PHASE=$1
  PHASE_T=$(now)
  [[ $PHASE == finished ]] || log "$PHASE..."
}

# ---------------------------------------------------------------------------------------------
# Packages

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
      echo "$p"
  done
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]})) || { log "packages already installed"; return; }
  log "installing: ${missing[*]}"
  # Package scripts would start corosync/pacemaker/pcsd/ssh in the ROOT namespace; a
  # policy-rc.d that answers 101 ("action forbidden") stops them. Keep one that exists.
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from cblab up.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
    apt-get update -q >/dev/null || rc=$?
  fi
  if ((rc == 0)) && ! apt_install "${missing[@]}" >/dev/null; then
    # Stale lists give 404s for superseded versions: refresh once and retry.
    apt-get update -q >/dev/null && apt_install "${missing[@]}" >/dev/null || rc=$?
  fi
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get failed (rc=$rc)"
}

# ---------------------------------------------------------------------------------------------
# Lab state: keys, per-node configuration, the bot's config

write_corosync_conf() {
  local n
  cat <<EOF
# cblab corosync.conf, written by deploy/lab/up.sh (same on every node).
totem {
    version: 2
    cluster_name: $CLUSTER_NAME
    transport: knet
    token: $TOKEN_MS
    crypto_cipher: aes256
    crypto_hash: sha256
    ip_version: ipv4
}

nodelist {
EOF
  for n in "${LAB_NODES[@]}"; do
    printf '    node {\n        ring0_addr: %s\n        name: %s\n        nodeid: %s\n    }\n' \
      "$(node_ip "$n")" "$n" "$(node_num "$n")"
  done
  cat <<EOF
}

quorum {
    provider: corosync_votequorum
}

logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}
EOF
}

# The whole prod-haproxy configuration, pre-seeded so the cluster needs no cibadmin calls.
# dc-deadtime=2s: the first DC election otherwise waits 20 s, most of a bring-up. Pacemaker
# accepts a cib.xml without its .sig file (it logs a warning).
write_cib() {
  local schema i prims="" locs=""
  schema=$(find /usr/share/pacemaker -maxdepth 1 -name 'pacemaker-[0-9]*.[0-9]*.rng' \
    -printf '%f\n' | sed 's/\.rng$//' | sort -t. -k1,1 -k2,2n | tail -n 1)
  for i in 1 2 3; do
    prims+="
      <primitive id=\"virtual_ip_$i\" class=\"ocf\" provider=\"heartbeat\" type=\"IPaddr2\">
        <instance_attributes id=\"virtual_ip_$i-instance_attributes\">
          <nvpair id=\"virtual_ip_$i-instance_attributes-cidr_netmask\" name=\"cidr_netmask\" value=\"24\"/>
          <nvpair id=\"virtual_ip_$i-instance_attributes-ip\" name=\"ip\" value=\"$(vip_ip "$i")\"/>
          <nvpair id=\"virtual_ip_$i-instance_attributes-nic\" name=\"nic\" value=\"eth0\"/>
        </instance_attributes>
        <operations>
          <op id=\"virtual_ip_$i-monitor-interval-10s\" name=\"monitor\" interval=\"10s\"/>
        </operations>
      </primitive>"
    locs+="
      <rsc_location id=\"location-virtual_ip_$i-node$i-100\" rsc=\"virtual_ip_$i\" node=\"node$i\" score=\"100\"/>"
  done
  cat <<EOF
<cib validate-with="$schema" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="cib-bootstrap-options-cluster-name" name="cluster-name" value="$CLUSTER_NAME"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources>$prims
      <clone id="loadbalancer-clone">
        <primitive id="loadbalancer" class="ocf" provider="pacemaker" type="Dummy">
          <operations>
            <op id="loadbalancer-monitor-interval-10s" name="monitor" interval="10s"/>
          </operations>
        </primitive>
      </clone>
    </resources>
    <constraints>$locs
    </constraints>
    <rsc_defaults>
      <meta_attributes id="rsc_defaults-meta_options">
        <nvpair id="rsc_defaults-meta_options-resource-stickiness" name="resource-stickiness" value="0"/>
      </meta_attributes>
    </rsc_defaults>
  </configuration>
  <status/>
</cib>
EOF
}

# A copy of the package's directory (same owner and mode), so each node starts from it.
copy_skeleton() {
  local src=$1 dst=$2
  if [[ -d $src ]]; then
    mkdir -p "$dst"
    cp -a "$src/." "$dst/"
    chown --reference="$src" "$dst"
    chmod --reference="$src" "$dst"
  else
    mkdir -p "$dst"
  fi
}

make_node_state() {
  local node=$1 dir hash
  dir=$(node_dir "$node")
  mkdir -p "$dir/pids" "$dir/log" "$dir/ssh"
  copy_skeleton /etc/corosync "$dir/etc-corosync"
  copy_skeleton /etc/pacemaker "$dir/etc-pacemaker"
  copy_skeleton /var/lib/corosync "$dir/var-lib-corosync"
  copy_skeleton /var/lib/pacemaker "$dir/var-lib-pacemaker"
  copy_skeleton /var/log/corosync "$dir/var-log-corosync"
  copy_skeleton /var/log/pacemaker "$dir/var-log-pacemaker"
  copy_skeleton /var/lib/pcsd "$dir/var-lib-pcsd"
  copy_skeleton /var/log/pcsd "$dir/var-log-pcsd"
  find "$dir/var-log-corosync" "$dir/var-log-pacemaker" "$dir/var-log-pcsd" -type f -delete

  write_corosync_conf >"$dir/etc-corosync/corosync.conf"
  install -m 0400 "$LAB_STATE/corosync-authkey" "$dir/etc-corosync/authkey"
  mkdir -p "$dir/var-lib-pacemaker/cib"
  write_cib >"$dir/var-lib-pacemaker/cib/cib.xml"
  chown -R hacluster:haclient "$dir/var-lib-pacemaker/cib"
  chmod 0600 "$dir/var-lib-pacemaker/cib/cib.xml"

  echo "$node" >"$dir/hostname"
  # A home of its own for root, as on a real host: bash run by sshd sources ~/.bashrc, and the
  # machine's (pyenv init and the like) added ~130 ms to every command over ssh and put the
  # machine's tool shims on the node's PATH. Debian's stock root dotfiles instead.
  install -d -m 0700 "$dir/root-home"
  install -m 0644 /usr/share/base-files/dot.bashrc "$dir/root-home/.bashrc"
  install -m 0644 /usr/share/base-files/dot.profile "$dir/root-home/.profile"
  {
    echo "127.0.0.1 localhost"
    for n in "${LAB_NODES[@]}"; do echo "$(node_ip "$n") $n"; done
  } >"$dir/hosts"
  # pcsd authenticates hacluster through PAM: give it a password in a private copy of
  # /etc/shadow that only this node sees. The machine's /etc/shadow is not changed. sshd
  # (UsePAM no) refuses even key logins to a locked ("!...") account, so root is unlocked here.
  hash=$(openssl passwd -6 -stdin <<<"$PASSWORD")
  awk -F: -v OFS=: -v h="$hash" '$1 == "hacluster" { $2 = h }
    $1 == "root" && $2 ~ /^!/ { $2 = "*" } { print }' /etc/shadow >"$dir/shadow"
  chown root:shadow "$dir/shadow"
  chmod 0640 "$dir/shadow"

  ssh-keygen -q -t ed25519 -N '' -C "cblab-$node-host" -f "$dir/ssh/ssh_host_ed25519_key"
  # pcsd would make its own 3072-bit RSA certificate on first start: RSA key generation
  # takes anywhere from 0.5 to 8 s here, which made bring-up times swing. A 2048-bit one made
  # now costs ~0.1 s, and pcsd uses whatever pcsd.crt/pcsd.key it finds.
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/O=pcsd/CN=$node" \
    -keyout "$dir/var-lib-pcsd/pcsd.key" -out "$dir/var-lib-pcsd/pcsd.crt" 2>/dev/null
  chmod 0600 "$dir/var-lib-pcsd/pcsd.key" "$dir/var-lib-pcsd/pcsd.crt"
  cat >"$dir/ssh/sshd_config" <<EOF
# cblab sshd for $node (root namespace sshd, if any, is not involved).
ListenAddress $(node_ip "$node"):22
HostKey $dir/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile $LAB_STATE/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's session modules (pam_loginuid, pam_systemd) expect a real login environment.
UsePAM no
X11Forwarding no
PrintMotd no
# Tests open many connections at once; the default 10:30:100 would drop some.
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  printf '%s %s\n' "$(node_ip "$node")" "$(cut -d' ' -f1,2 "$dir/ssh/ssh_host_ed25519_key.pub")" \
    >>"$LAB_STATE/ssh/known_hosts"
}

write_ssh_config() {
  local n
  for n in "${LAB_NODES[@]}"; do
    printf 'Host %s cblab-%s\n    HostName %s\n' "$n" "$n" "$(node_ip "$n")"
  done
  cat <<EOF
Host node1 node2 node3 cblab-node1 cblab-node2 cblab-node3 $LAB_NET.11 $LAB_NET.12 $LAB_NET.13
    User root
    IdentityFile $LAB_STATE/ssh/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $LAB_STATE/ssh/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
# Back to every host, so whatever is read after this file is not scoped to the lab nodes.
Host *
EOF
}

write_bot_config() {
  cat <<EOF
state_dir = "$LAB_STATE/bot-state"
[[clusters]]
name = "lab"
nodes = [{ name = "node1", host = "$(node_ip node1)", port = 22 }, { name = "node2", host = "$(node_ip node2)", port = 22 }, { name = "node3", host = "$(node_ip node3)", port = 22 }]
ssh_user = "root"
ssh_key = "$LAB_STATE/ssh/id_ed25519"
known_hosts = "$LAB_STATE/ssh/known_hosts"
sudo = false
vips = ["virtual_ip_1", "virtual_ip_2", "virtual_ip_3"]
everywhere = ["loadbalancer-clone"]
EOF
}

make_state() {
  rm -rf "$LAB_STATE"
  mkdir -p "$LAB_STATE/ssh"
  chmod 0700 "$LAB_STATE" "$LAB_STATE/ssh"
  mkdir -p "$LAB_STATE/bin" "$LAB_STATE/bot-state"
  ssh-keygen -q -t ed25519 -N '' -C cblab-bot -f "$LAB_STATE/ssh/id_ed25519"
  cp "$LAB_STATE/ssh/id_ed25519.pub" "$LAB_STATE/ssh/authorized_keys"
  : >"$LAB_STATE/ssh/known_hosts"
  head -c 256 /dev/urandom >"$LAB_STATE/corosync-authkey" # what corosync-keygen makes
  local n
  for n in "${LAB_NODES[@]}"; do make_node_state "$n"; done
  # A bind mount pins the inode it covers: a wrapper that execs the shim by path means edits
  # to systemctl-shim.sh reach nodes that are already running.
  printf '#!/bin/sh\nexec /bin/bash %q "$@"\n' "$LAB_DIR/systemctl-shim.sh" >"$LAB_STATE/bin/systemctl"
  chmod 0755 "$LAB_STATE/bin/systemctl"
  write_ssh_config >"$LAB_STATE/ssh/ssh_config"
  printf '# cblab lab nodes (removed by deploy/lab/down.sh)\nInclude %s\n' \
    "$LAB_STATE/ssh/ssh_config" >"$LAB_SSH_DROPIN"
  write_bot_config >"$LAB_STATE/clusterbot.toml"
  echo "$PARAMS" >"$LAB_STATE/params"
}

# ---------------------------------------------------------------------------------------------
# Network: one bridge in the root namespace, one veth per node. Only the lab /24 exists on
# these links: no default route is added anywhere and IPv6 is off, so nothing can leave.

make_network() {
  ip link add "$LAB_BRIDGE" type bridge
  sysctl -qw "net.ipv6.conf.$LAB_BRIDGE.disable_ipv6=1"
  ip addr add "$LAB_NET.1/24" dev "$LAB_BRIDGE"
  ip link set "$LAB_BRIDGE" up
  local n ns veth
  for n in "${LAB_NODES[@]}"; do
    ns=$(node_netns "$n")
    veth="cblab-n$(node_num "$n")"
    ip netns add "$ns"
    # IPv6 off before any link comes up, so not even a link-local address or RS is sent.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1"
    ip link set "$veth" master "$LAB_BRIDGE" up
    ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    stat -L -c %i "/run/netns/$ns" >"$(node_dir "$n")/netns.ino"
  done
}

# ---------------------------------------------------------------------------------------------
# Node namespaces. `unshare --mount=FILE --uts=FILE` keeps the namespaces alive through bind
# mounts of their handles, and unshare(1) requires the handles' directory to be a private
# mount (otherwise the handle would propagate into the namespace it names).

make_nodes() {
  mkdir -p "$LAB_NSDIR"
  mount --bind "$LAB_NSDIR" "$LAB_NSDIR"
  mount --make-private "$LAB_NSDIR"
  local n
  for n in "${LAB_NODES[@]}"; do
    touch "$LAB_NSDIR/$n.mnt" "$LAB_NSDIR/$n.uts"
    nsenter --net="/run/netns/$(node_netns "$n")" -- \
      unshare --mount="$LAB_NSDIR/$n.mnt" --uts="$LAB_NSDIR/$n.uts" --propagation private -- \
      /bin/bash -c "$(declare -f node_mounts); node_mounts \"\$@\"" _ "$n" "$(node_dir "$n")" \
      "$LAB_STATE/bin/systemctl" "${LAB_NODE_BINDS[@]}"
  done
}

# Runs INSIDE a new node namespace: node_mounts NODE NODE_DIR SHIM_WRAPPER BIND...
node_mounts() {
  set -euo pipefail
  local node=$1 dir=$2 shim=$3 b
  shift 3
  hostname "$node"
  # Drop the copies of other namespaces' handles (/run/netns, /run/cblab/ns) that this new
  # mount namespace inherited: they would keep those namespaces alive after down.sh.
  umount -l /run/netns 2>/dev/null || true
  umount -l /run/cblab/ns 2>/dev/null || true
  # sysfs as `ip netns exec` does, so /sys/class/net shows this node's interfaces.
  umount -l /sys
  mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
  # A private /run holds the pid files, sockets and state of this node's daemons, most
  # importantly /run/Dummy-loadbalancer.state (each clone instance needs its own).
  mount -t tmpfs -o nosuid,nodev,mode=0755 cblab-run /run
  mkdir -m 0755 /run/lock /run/sshd /run/resource-agents /run/pcsd
  mount -t tmpfs -o nosuid,nodev,mode=1777 cblab-shm /dev/shm # libqb ring buffers
  for b in "$@"; do
    mount --bind "$dir/${b#*:}" "${b%%:*}"
  done
  mount --bind "$shim" /usr/bin/systemctl
}

# ---------------------------------------------------------------------------------------------
# Daemons and cluster

# Run "lab_exec NODE ARGS..." for every node at once; fail if any fails.
on_all_nodes() {
  local n pids=() rc=0
  for n in "${LAB_NODES[@]}"; do
    lab_exec "$n" "$@" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return "$rc"
}

labwait() { "$PYTHON" "$LAB_DIR/labwait.py" "$@" >/dev/null; }

# Authenticate once, on node1, then hand its known-hosts (the tokens) to the other nodes, as
# `pcs cluster setup` does; running `pcs host auth` on every node costs ~4 s more CPU.
pcs_auth() {
  local n args=() out
  for n in "${LAB_NODES[@]}"; do args+=("$n" "addr=$(node_ip "$n")"); done
  # pcs prints "nodeN: Authorized" per host on stderr; show it only if something failed.
  # Seen now and then on a busy machine (other test runs): every node answers "Username
  # and/or password is incorrect" to a right password, and a second try works. Three tries.
  local try
  for try in 1 2 3; do
    out=$(lab_exec node1 pcs host auth "${args[@]}" -u hacluster -p "$PASSWORD" 2>&1) && break
    ((try < 3)) || { echo "$out" >&2; return 1; }
    log "pcs host auth failed (try $try: $(tail -n 1 <<<"$out")); trying again"
    sleep 1
  done
  for n in "${LAB_NODES[@]:1}"; do
    install -m 0600 "$(node_dir node1)/var-lib-pcsd/known-hosts" "$(node_dir "$n")/var-lib-pcsd/"
  done
}

ssh_check() {
  local n pids=() rc=0
  for n in "${LAB_NODES[@]}"; do
    ssh -F "$LAB_STATE/ssh/ssh_config" "root@$(node_ip "$n")" \
      crm_mon --one-shot --inactive --output-as=xml >/dev/null &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return "$rc"
}

# Healthy already, and built with the same settings? Then there is nothing to do.
already_up() {
  [[ ${LAB_FRESH:-0} == 1 ]] && return 1
  [[ -f $LAB_STATE/params && $(<"$LAB_STATE/params") == "$PARAMS" ]] || return 1
  [[ -x $PYTHON ]] || return 1
  local n
  for n in "${LAB_NODES[@]}"; do # nodectl.sh needs every handle
    [[ -e /run/netns/$(node_netns "$n") && -e $LAB_NSDIR/$n.mnt && -e $LAB_NSDIR/$n.uts ]] ||
      return 1
  done
  labwait --node node1 --timeout 0 healthy && ssh_check 2>/dev/null
}

# On failure: keep the logs (the teardown deletes them), say where they are, then tear down.
on_exit() {
  local rc=$?
  ((rc == 0)) && return
  log "bring-up FAILED (rc=$rc) during: $PHASE"
  local keep n
  keep=$(mktemp -d /tmp/cblab-failed.XXXXXX)
  for n in "${LAB_NODES[@]}"; do
    [[ -d $(node_dir "$n") ]] || continue
    mkdir -p "$keep/$n"
    cp -r "$(node_dir "$n")/log" "$(node_dir "$n")/var-log-corosync" \
      "$(node_dir "$n")/var-log-pacemaker" "$(node_dir "$n")/var-log-pcsd" "$keep/$n/" 2>/dev/null || true
    grep -hiE 'error|crit' "$keep/$n"/*/* 2>/dev/null | tail -n 5 | sed "s/^/  $n: /" >&2 || true
  done
  log "node logs kept in $keep"
  if [[ ${LAB_KEEP_ON_FAIL:-0} == 1 ]]; then
    log "left as it is (LAB_KEEP_ON_FAIL=1); run down.sh when done"
  else
    log "tearing down the partial lab"
    bash "$LAB_DIR/down.sh" || true
  fi
}

main() {
  [[ $(id -u) == 0 ]] || die "run as root (namespaces, mounts, veths, apt)"
  [[ $TOKEN_MS =~ ^[0-9]+$ ]] || die "LAB_TOKEN_MS must be a number of milliseconds"
  if lab_exists; then
    if already_up; then
      log "lab already up and healthy ($PARAMS); nothing to do in $(since "$T0") s"
      log "bot config: $LAB_STATE/clusterbot.toml"
      return
    fi
    log "a lab exists but is not healthy or has other settings: tearing it down first"
    phase teardown
    bash "$LAB_DIR/down.sh"
  fi
  trap on_exit EXIT
  # A non-interactive bash killed by INT/TERM skips its EXIT trap; turn them into an exit.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  phase packages
  install_packages
  phase state
  make_state
  phase network
  make_network
  phase namespaces
  make_nodes
  phase daemons
  on_all_nodes systemctl start sshd pacemaker
  local pcsd_job=""
  if ((PCSD)); then
    on_all_nodes systemctl start pcsd &
    pcsd_job=$!
  fi
  phase cluster
  labwait --node node1 --timeout 120 healthy
  # Every node must see it, not only node1 (the others catch up within a poll or two).
  labwait --node node2 --timeout 30 healthy
  labwait --node node3 --timeout 30 healthy
  if ((PCSD)); then
    phase pcsd
    # Rarely, on a busy machine, the shim reports pcsd-ruby as exited while it starts; starting
    # again is a no-op where pcsd runs and a second chance where it does not.
    if ! wait "$pcsd_job"; then
      log "pcsd did not start on every node; starting it again"
      on_all_nodes systemctl start pcsd
    fi
    phase auth
    pcs_auth
  fi
  phase ssh
  ssh_check
  phase finished
  trap - EXIT
  local t out=""
  for t in "${TIMINGS[@]}"; do out+=", ${t% *} ${t##* }s"; done
  log "lab up in $(since "$T0") s (${out#, }) token=${TOKEN_MS}ms pcsd=$PCSD"
  log "nodes: ssh -F $LAB_STATE/ssh/ssh_config node1  |  bot config: $LAB_STATE/clusterbot.toml"
}

main "$@"
