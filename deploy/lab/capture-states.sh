#!/bin/bash
# Capture what the bot's read commands answer on the cblab lab in three situations the older
# captures lack, for the tests: usage capture-states.sh OUTDIR (e.g. tests/fixtures/lab-2.1.5).
# Needs a healthy lab (run up.sh first) and the lab lock (flock /run/lock/cblab-tests.lock ...).
#   h_pacemaker_stopped          `systemctl stop pacemaker` on every node; Corosync up, 3/3 quorate
#   i_corosync_only_node3_down   then `systemctl stop corosync` on node3: Corosync 2/3 (Proxmox shape)
#   j_node3_partitioned          healthy again, then node3 cut off from its peers' Corosync traffic
#                                (nodectl.sh node3 partition): it runs Pacemaker alone, answers ssh
# and heals the lab after each. Per scenario, per node: the bot's exact argv over ssh with the
# bot's key and pinned known_hosts, stdout in OUTDIR/<scenario>/<node>.<kind>, stderr (when any)
# in <node>.<kind>.stderr, and meta.json with each command, its exit code and how long it took.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

OUT=${1:?usage: capture-states.sh OUTDIR}
NODECTL=$LAB_DIR/nodectl.sh
RECORDS=$(mktemp)
HEALED=0
# A failure half-way must not leave the lab broken for the next user.
trap 'rm -f "$RECORDS"; ((HEALED)) || heal || log "could not heal the lab: check it"' EXIT
# The bot's default read commands (bot/settings.py Commands; COROSYNC_DAEMONS in bot/collect.py).
CRM_MON=(crm_mon --one-shot --inactive --output-as=xml)
QUORUMTOOL=(corosync-quorumtool -s)
CFGTOOL=(corosync-cfgtool -s)
DAEMONS=(systemctl is-active corosync pacemaker pcsd)
DAEMONS_COROSYNC=(systemctl is-active corosync)

# capture SCENARIO NODE KIND COMMAND...   (KIND is the file name after "<node>.")
capture() {
  local scenario=$1 node=$2 kind=$3 rc=0 t err
  shift 3
  local dir="$OUT/$scenario"
  err="$dir/$node.$kind.stderr"
  t=$(now)
  ssh_node "$node" "$@" >"$dir/$node.$kind" 2>"$err" || rc=$?
  [[ -s $err ]] || rm -f "$err"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$node" "$kind" "ssh $node $*" "$rc" \
    "$(since "$t")" >>"$RECORDS"
}

capture_all() {
  local scenario=$1 n
  mkdir -p "$OUT/$scenario"
  for n in "${LAB_NODES[@]}"; do
    capture "$scenario" "$n" crm_mon.xml "${CRM_MON[@]}"
    capture "$scenario" "$n" quorumtool.txt "${QUORUMTOOL[@]}"
    capture "$scenario" "$n" cfgtool.txt "${CFGTOOL[@]}"
    capture "$scenario" "$n" daemons.txt "${DAEMONS[@]}"
  done
}

# Poll `corosync-quorumtool -s` inside NODE until it reports COUNT nodes (and quorum when asked).
wait_members() {
  local node=$1 count=$2 quorate=$3 deadline=$((SECONDS + 60)) out
  while ((SECONDS < deadline)); do
    out=$(lab_exec "$node" corosync-quorumtool -s 2>/dev/null || true)
    if grep -Eq "^Nodes: +$count\$" <<<"$out" &&
      { [[ $quorate == any ]] || grep -Eq "^Quorate: +$quorate\$" <<<"$out"; }; then
      return 0
    fi
    sleep 0.2
  done
  die "$node: Corosync did not show $count nodes (quorate: $quorate) within 60 s"
}

heal() {
  local n
  "$NODECTL" node3 unpartition
  lab_exec node3 systemctl start corosync
  for n in "${LAB_NODES[@]}"; do lab_exec "$n" systemctl start pacemaker; done
  for n in "${LAB_NODES[@]}"; do "$NODECTL" "$n" wait --timeout 90 healthy >/dev/null; done
}

pacemaker_stopped() {
  local n
  for n in "${LAB_NODES[@]}"; do lab_exec "$n" systemctl stop pacemaker; done
  for n in "${LAB_NODES[@]}"; do
    "$NODECTL" "$n" wait --timeout 60 down >/dev/null
    wait_members "$n" 3 Yes
  done
  capture_all h_pacemaker_stopped
}

corosync_only_node3_down() {
  lab_exec node3 systemctl stop corosync
  wait_members node1 2 Yes
  wait_members node2 2 Yes
  capture_all i_corosync_only_node3_down
  local n
  # What a corosync-only cluster (kind = "corosync") asks instead of the three units.
  for n in "${LAB_NODES[@]}"; do
    capture i_corosync_only_node3_down "$n" daemons_corosync.txt "${DAEMONS_COROSYNC[@]}"
  done
}

node3_partitioned() {
  "$NODECTL" node3 partition
  "$NODECTL" node1 wait --timeout 60 offline:node3 quorum running:virtual_ip_3@!node3 >/dev/null
  "$NODECTL" node2 wait --timeout 60 offline:node3 quorum >/dev/null
  "$NODECTL" node3 wait --timeout 60 offline:node1,node2 no-quorum >/dev/null
  wait_members node3 1 No
  capture_all j_node3_partitioned
}

write_meta() {
  "${PYTHON:-/usr/bin/python3}" - "$RECORDS" "$OUT" "$@" <<'EOF'
import datetime, json, pathlib, sys
records, out, versions = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
descriptions = {
    "h_pacemaker_stopped": "`systemctl stop pacemaker` on node1-3: Pacemaker down everywhere "
                           "(crm_mon cannot connect), Corosync up and quorate with 3/3 members",
    "i_corosync_only_node3_down": "after h: `systemctl stop corosync` on node3 (sshd up): Corosync "
                                  "quorate with node1+node2 (2/3), the Proxmox shape of member loss",
    "j_node3_partitioned": "healthy lab, then Corosync's UDP port 5405 dropped both ways inside "
                           "node3 only (nftables): node1+node2 quorate without node3; node3 runs "
                           "Pacemaker alone WITHOUT quorum and still answers ssh",
}
at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
by_scenario = {}
for line in open(records).read().splitlines():
    scenario, node, kind, cmd, rc, secs = line.split("\t")
    err = out / scenario / f"{node}.{kind}.stderr"
    by_scenario.setdefault(scenario, []).append(
        {"node": node, "kind": kind, "cmd": cmd, "rc": int(rc), "secs": float(secs),
         "stderr": err.read_text() if err.exists() else ""})
for scenario, outputs in by_scenario.items():
    meta = {"scenario": scenario, "description": descriptions[scenario], "captured_at": at,
            "source": "deploy/lab/capture-states.sh on cblab (3 namespaced nodes)",
            "versions": dict(v.split("=", 1) for v in versions), "outputs": outputs}
    with open(out / scenario / "meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
EOF
}

main() {
  mkdir -p "$OUT"
  local n
  for n in "${LAB_NODES[@]}"; do
    "$NODECTL" "$n" wait --timeout 60 healthy >/dev/null || die "the lab is not healthy"
  done
  pacemaker_stopped
  corosync_only_node3_down
  heal
  node3_partitioned
  heal
  HEALED=1
  write_meta "corosync=$(dpkg-query -W -f='${Version}' corosync)" \
    "pacemaker=$(dpkg-query -W -f='${Version}' pacemaker)" "pcs=$(dpkg-query -W -f='${Version}' pcs)" \
    "token_ms=$(awk '/token:/ {print $2}' "$(node_dir node1)/etc-corosync/corosync.conf")"
  log "captured into $OUT; lab healed"
}

main "$@"
