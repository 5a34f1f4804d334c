#!/bin/bash
# Capture real corosync-quorumtool / corosync-cfgtool output from the cblab lab for the parser
# tests: usage capture-corosync.sh OUTDIR (e.g. tests/fixtures/corosync/lab-corosync-3).
# Needs a healthy lab (run up.sh first). Runs each command over ssh as the bot would, with the
# bot's key and pinned known_hosts, in these scenarios:
#   healthy            all three nodes up                          (+ crm_mon XML from node1)
#   node3_down         node3 power-cut (nodectl.sh crash), 2/3 still quorate
#   node2_node3_down   node2 power-cut as well: node1 alone, no quorum
# and heals the lab afterwards. Files: <scenario>.<node>.<kind>.txt; meta.json records each
# command, its exit code, its stderr and how long it took.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

OUT=${1:?usage: capture-corosync.sh OUTDIR}
NODECTL=$LAB_DIR/nodectl.sh
RECORDS=$(mktemp)
trap 'rm -f "$RECORDS"' EXIT

# capture SCENARIO NODE KIND FILE-EXTENSION COMMAND...
capture() {
  local scenario=$1 node=$2 kind=$3 ext=$4 rc=0 t err
  shift 4
  local file="$scenario.$node.$kind.$ext"
  err=$(mktemp)
  t=$(now)
  ssh_node "$node" "$@" >"$OUT/$file" 2>"$err" || rc=$?
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$node" "$kind" "$file" \
    "ssh root@$(node_ip "$node") $*" "$rc" \
    "$(since "$t")" >>"$RECORDS"
  # stderr, one record line: newlines as \n (turned back by the JSON writer).
  printf '%s\n' "$(sed ':a;N;$!ba;s/\n/\\n/g' "$err")" >>"$RECORDS"
  rm -f "$err"
}

capture_all() {
  local scenario=$1 n
  for n in "${LAB_NODES[@]}"; do
    capture "$scenario" "$n" quorumtool txt corosync-quorumtool -s
    capture "$scenario" "$n" cfgtool txt corosync-cfgtool -s
  done
}

write_meta() {
  "${PYTHON:-/usr/bin/python3}" - "$RECORDS" "$OUT/meta.json" "$@" <<'EOF'
import json, sys, datetime
records, out, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = open(records).read().split("\n")
outputs = []
for head, err in zip(lines[0::2], lines[1::2]):
    scenario, node, kind, file, cmd, rc, secs = head.split("\t")
    outputs.append({"scenario": scenario, "node": node, "kind": kind, "file": file,
                    "cmd": cmd, "rc": int(rc), "secs": float(secs),
                    "stderr": err.replace("\\n", "\n")})
meta = {
    "source": "deploy/lab (cblab): real Corosync/Pacemaker cluster of 3 namespaced nodes",
    "captured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "versions": dict(v.split("=", 1) for v in versions),
    "scenarios": {
        "healthy": "node1-3 online, quorate; virtual_ip_N on nodeN; loadbalancer-clone on all",
        "node3_down": "node3 power-cut (corosync + pacemaker SIGKILLed, VIP dropped; sshd "
                      "still up): node1+node2 quorate (2/3), virtual_ip_3 failed over",
        "node2_node3_down": "node2 power-cut as well: node1 alone, partition WITHOUT quorum",
    },
    "outputs": outputs,
}
with open(out, "w") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
EOF
}

main() {
  mkdir -p "$OUT"
  "$NODECTL" node1 wait --timeout 60 healthy >/dev/null || die "the lab is not healthy"
  capture_all healthy
  capture healthy node1 crm_mon xml crm_mon -1 --output-as=xml

  "$NODECTL" node3 crash
  "$NODECTL" node1 wait --timeout 60 offline:node3 quorum running:virtual_ip_3@!node3 \
    clone:loadbalancer-clone=2 >/dev/null
  "$NODECTL" node2 wait --timeout 60 offline:node3 quorum >/dev/null
  capture_all node3_down

  "$NODECTL" node2 crash
  "$NODECTL" node1 wait --timeout 60 offline:node2,node3 no-quorum >/dev/null
  capture_all node2_node3_down

  "$NODECTL" node2 start
  "$NODECTL" node3 start
  "$NODECTL" node1 wait --timeout 90 healthy >/dev/null

  local v_cs v_pcmk
  v_cs=$(dpkg-query -W -f='${Version}' corosync)
  v_pcmk=$(dpkg-query -W -f='${Version}' pacemaker)
  write_meta "corosync=$v_cs" "pacemaker=$v_pcmk" \
    "token_ms=$(awk '/token:/ {print $2}' "$(node_dir node1)/etc-corosync/corosync.conf")"
  log "captured into $OUT; lab healed"
}

main "$@"
