#!/bin/bash
# Capture what `crmadmin --status=NODE --output-as=xml --timeout=1s` (the bot's read of a node's
# controller state, bot/collect.py CONTROLLER) answers on the cblab lab, for the parser's tests:
# usage capture-controller.sh OUTDIR (e.g. tests/fixtures/crmadmin-2.1.5).
# Needs a healthy lab (run up.sh first) and the lab lock (flock /run/lock/cblab-tests.lock ...).
#   <node>.idle.xml            every node about itself, cluster at rest (the DC S_IDLE, others S_NOT_DC)
#   <dc>.transition.xml        the DC during `nodectl.sh node2 standby`: the first answer that is not
#                              S_IDLE, asked in a loop inside the DC (a transition lasts ~0.3 s here)
#   node3.crashed.xml          node3 about itself after its power cut (its controller is gone)
#   <dc>.joining.xml           the DC while node3 rejoins: the first answer that is not S_IDLE
#   node1.denied.xml           node1 about itself as an unprivileged user (not in haclient)
# Heals the lab at the end (and on failure). meta.json: each command, where it ran, exit code.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

OUT=${1:?usage: capture-controller.sh OUTDIR}
NODECTL=$LAB_DIR/nodectl.sh
RECORDS=$(mktemp)
trap 'rm -f "$RECORDS"; heal || log "could not heal the lab: check it"' EXIT

ask() { ASK=(crmadmin "--status=$1" --output-as=xml --timeout=1s); }

# note FILE NODE HOW RC COMMAND
note() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RECORDS"; }

# over ssh, as the bot asks
capture() {
  local node=$1 file=$2 rc=0
  ask "$node"
  ssh_node "$node" "${ASK[@]}" >"$OUT/$file" 2>"$OUT/$file.stderr" || rc=$?
  [[ -s $OUT/$file.stderr ]] || rm -f "$OUT/$file.stderr"
  note "$file" "$node" ssh "$rc" "${ASK[*]}"
}

# inside the DC, in a loop, until its answer is not S_IDLE (or 400 tries): run in the background
first_busy() {
  local dc=$1 file=$2
  ask "$dc"
  lab_exec "$dc" bash -c 'for i in $(seq 400); do o=$('"${ASK[*]}"' 2>&1); rc=$?
    case $o in *S_IDLE*) ;; *) printf "%s\n" "$o"; exit $rc;; esac; done; exit 99' >"$OUT/$file" || echo $? >"$OUT/$file.rc"
}

heal() {
  "$NODECTL" node2 unstandby >/dev/null 2>&1 || true
  "$NODECTL" node3 start >/dev/null 2>&1 || true
  "$NODECTL" node1 wait --timeout 90 healthy >/dev/null
}

main() {
  mkdir -p "$OUT"
  "$NODECTL" node1 wait --timeout 60 healthy >/dev/null || die "the lab is not healthy"
  local n dc rc
  dc=$(lab_exec node1 crmadmin -D -q 2>&1 | tail -1)
  [[ $dc == node1 || $dc == node2 ]] || die "the DC is $dc; this script expects node1 or node2"
  for n in "${LAB_NODES[@]}"; do capture "$n" "$n.idle.xml"; done
  first_busy "$dc" "$dc.transition.xml" & local pid=$!
  sleep 0.3; "$NODECTL" node2 standby; wait "$pid"
  ask "$dc"
  note "$dc.transition.xml" "$dc" "inside, during standby" "$(cat "$OUT/$dc.transition.xml.rc" 2>/dev/null || echo 0)" "${ASK[*]}"
  "$NODECTL" node1 wait --timeout 30 standby:node2 >/dev/null; "$NODECTL" node2 unstandby
  "$NODECTL" node1 wait --timeout 30 healthy >/dev/null
  "$NODECTL" node3 crash
  "$NODECTL" node1 wait --timeout 30 offline:node3 >/dev/null
  capture node3 node3.crashed.xml
  first_busy "$dc" "$dc.joining.xml" & pid=$!
  sleep 0.3; "$NODECTL" node3 start; wait "$pid"
  ask "$dc"
  note "$dc.joining.xml" "$dc" "inside, during node3 start" "$(cat "$OUT/$dc.joining.xml.rc" 2>/dev/null || echo 0)" "${ASK[*]}"
  "$NODECTL" node1 wait --timeout 60 healthy >/dev/null
  ask node1
  rc=0; lab_exec node1 runuser -u nobody -- "${ASK[@]}" >"$OUT/node1.denied.xml" 2>&1 || rc=$?
  note node1.denied.xml node1 "inside, as nobody" "$rc" "${ASK[*]}"
  rm -f "$OUT"/*.rc
  /usr/bin/python3 - "$RECORDS" "$OUT" "$(dpkg-query -W -f='${Version}' pacemaker)" <<'PY'
import datetime, json, pathlib, sys
records, out, version = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
rows = [dict(zip(("file", "node", "how", "rc", "cmd"), l.split("\t"))) for l in open(records).read().splitlines()]
for r in rows:
    r["rc"] = int(r["rc"])
meta = {"captured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "deploy/lab/capture-controller.sh on cblab (3 namespaced nodes)",
        "pacemaker": version, "outputs": rows}
(out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
PY
  log "captured into $OUT"
}

main "$@"
