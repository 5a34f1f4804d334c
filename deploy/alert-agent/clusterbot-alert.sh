#!/bin/bash
# clusterbot-alert.sh: a Pacemaker alert agent that asks clusterbot to poll this cluster now.
#
# Pacemaker runs it (as the hacluster user) with CRM_alert_* variables on node, fencing and
# resource events; see README.md next to this file. It POSTs one signed JSON document to the
# recipient URL and exits. The bot treats the push as a hint and re-reads the cluster over SSH,
# so nothing here is trusted beyond "something happened on <cluster>".
#
# Rules this script keeps:
#   * never blocks Pacemaker for long: one curl with a short --max-time, no retries;
#   * always exits 0 (a failed push must not look like a broken alert to Pacemaker); problems go
#     to stderr, which Pacemaker logs;
#   * no eval, no sourcing: the config file is parsed as KEY=value lines;
#   * the secret never appears on a command line (ps shows argv to every local user), so the
#     HMAC is computed here from sha256sum instead of `openssl dgst -hmac SECRET`.
#
# Settings (alert options from `pcs alert create ... options KEY=value` arrive as environment
# variables and win over the config file):
#   CLUSTERBOT_CLUSTER      the cluster name as configured in clusterbot (required)
#   CLUSTERBOT_URL          push URL when the alert recipient is not one (https://bot.example/push)
#   CLUSTERBOT_SECRET_FILE  file holding the shared secret (default /etc/clusterbot/push.secret)
#   CLUSTERBOT_TIMEOUT      curl --max-time in seconds, 1-30 (default 5)
#   CLUSTERBOT_CACERT       CA bundle for a private TLS certificate (optional)
#   CLUSTERBOT_KINDS        alert kinds to forward (default "node fencing resource")
#   CLUSTERBOT_ALERT_CONFIG the config file itself (default /etc/clusterbot/alert.conf)

set -u
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: '&' in ${x//a/b} must stay literal
export LC_ALL=C  # byte-wise string handling for JSON escaping
PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 077

readonly NAME_RE='^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$'
readonly AGENT="clusterbot-alert/1"
KEYS=(CLUSTERBOT_CLUSTER CLUSTERBOT_URL CLUSTERBOT_SECRET_FILE CLUSTERBOT_TIMEOUT CLUSTERBOT_CACERT
      CLUSTERBOT_KINDS)

log() { printf 'clusterbot-alert: %s\n' "$*" >&2; }

is_setting() {
    local k
    for k in "${KEYS[@]}"; do [[ $1 == "$k" ]] && return 0; done
    return 1
}

# KEY=value lines; blank lines and # comments ignored; optional single or double quotes.
read_config() {
    local file=$1 line key value
    [[ -e $file ]] || return 0
    if [[ ! -r $file ]]; then
        log "cannot read $file"
        return 0
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ ! $line =~ ^[[:space:]]*([A-Z_]+)[[:space:]]*=[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]]; then
            log "$file: ignoring a malformed line"
            continue
        fi
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]-}
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        if ! is_setting "$key"; then
            log "$file: ignoring unknown key $key"
            continue
        fi
        # The environment (alert options) wins; printf -v assigns without evaluating anything.
        [[ -n ${!key-} ]] || printf -v "$key" '%s' "$value"
    done <"$file"
}

# A JSON string literal: quotes, backslashes and control characters escaped, byte by byte.
json_string() {
    local s=$1 out='"' c code i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            '"') out+='\"' ;;
            \\) out+="\\\\" ;;
            [[:cntrl:]])
                printf -v code '%d' "'$c"
                printf -v c '\\u%04x' "$code"
                out+=$c
                ;;
            *) out+=$c ;;
        esac
    done
    printf '%s"' "$out"
}

# stdin -> lowercase hex, no spaces or newlines.
to_hex() {
    local out
    out=$(od -An -v -tx1)
    out=${out//[[:space:]]/}
    printf '%s' "$out"
}

# stdin -> hex SHA-256.
sha256_hex() {
    local out
    out=$(sha256sum)
    printf '%s' "${out%% *}"
}

# HMAC-SHA256 (RFC 2104) of stdin under key $1, as hex. Only builtins ever see the key.
hmac_sha256_hex() {
    local keyhex ipad='' opad='' inner i b
    keyhex=$(printf '%s' "$1" | to_hex)
    if ((${#keyhex} > 128)); then  # keys longer than the 64-byte block are hashed first
        keyhex=$(printf '%s' "$1" | sha256_hex)
    fi
    while ((${#keyhex} < 128)); do keyhex+=00; done
    for ((i = 0; i < 128; i += 2)); do
        b=$((16#${keyhex:i:2}))
        printf -v ipad '%s\\x%02x' "$ipad" $((b ^ 0x36))
        printf -v opad '%s\\x%02x' "$opad" $((b ^ 0x5c))
    done
    inner=$({ printf '%b' "$ipad"; cat; } | sha256_hex)
    inner=$(for ((i = 0; i < 64; i += 2)); do printf '\\x%s' "${inner:i:2}"; done)
    { printf '%b' "$opad"; printf '%b' "$inner"; } | sha256_hex
}

# One "key":"value" member per non-empty CRM_alert_* variable.
event_json() {
    local out='' field var value
    for field in kind node nodeid rsc task desc rc target_rc status interval timestamp \
        timestamp_epoch timestamp_usec node_sequence version attribute_name attribute_value; do
        var=CRM_alert_$field
        value=${!var-}
        [[ -n $value ]] || continue
        out+="${out:+,}\"$field\":$(json_string "$value")"
    done
    printf '{%s}' "$out"
}

main() {
    read_config "${CLUSTERBOT_ALERT_CONFIG:-/etc/clusterbot/alert.conf}"
    local cluster=${CLUSTERBOT_CLUSTER-} kind=${CRM_alert_kind-}
    local kinds=${CLUSTERBOT_KINDS:-node fencing resource}
    local timeout=${CLUSTERBOT_TIMEOUT:-5} url secret_file secret now body sig status

    if [[ -z $kind ]]; then
        log "no CRM_alert_kind: run me from a Pacemaker alert, not by hand"
        return 0
    fi
    [[ " $kinds " == *" $kind "* ]] || return 0  # e.g. attribute alerts: not forwarded

    if [[ ! $cluster =~ $NAME_RE ]]; then
        log "CLUSTERBOT_CLUSTER is missing or not a cluster name; nothing sent"
        return 0
    fi
    url=${CRM_alert_recipient-}
    [[ $url =~ ^https?:// ]] || url=${CLUSTERBOT_URL-}
    if [[ ! $url =~ ^https?://[^[:space:]]+$ ]]; then
        log "no push URL: set the alert recipient (value=https://bot/push) or CLUSTERBOT_URL"
        return 0
    fi
    if [[ ! $timeout =~ ^[0-9]{1,2}$ ]] || ((10#$timeout < 1 || 10#$timeout > 30)); then
        timeout=5
    fi

    secret_file=${CLUSTERBOT_SECRET_FILE:-/etc/clusterbot/push.secret}
    secret=''
    # The first line is the secret; `|| true`: a file without a final newline still counts.
    [[ -r $secret_file ]] && { IFS= read -r secret <"$secret_file" || true; }
    secret=${secret%$'\r'}
    if [[ -z $secret ]]; then
        log "cannot read the push secret from $secret_file; nothing sent"
        return 0
    fi

    body="{\"cluster\":$(json_string "$cluster"),\"agent\":\"$AGENT\",\"event\":$(event_json)}"
    printf -v now '%(%s)T' -1
    sig=$(printf 'v1:%s:%s' "$now" "$body" | hmac_sha256_hex "$secret")

    local -a curl_args=(
        -q --silent --show-error --fail --output /dev/null
        --proto '=http,https' --connect-timeout "$timeout" --max-time "$timeout"
        -H 'Content-Type: application/json'
        -H "X-Clusterbot-Timestamp: $now"
        -H "X-Clusterbot-Signature: v1=$sig"
        --data-binary @-
    )
    [[ -n ${CLUSTERBOT_CACERT-} ]] && curl_args+=(--cacert "$CLUSTERBOT_CACERT")
    printf '%s' "$body" | curl "${curl_args[@]}" --url "$url"
    status=$?
    if ((status != 0)); then
        log "push of a $kind event for $cluster to $url failed (curl exit $status)"
    fi
    return 0
}

main "$@"
exit 0
