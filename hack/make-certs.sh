#!/usr/bin/env bash
# make-certs.sh — certificates for mutual TLS between nfd-worker and nfd-master
# (deploy/overlays/tls, or the Helm chart's tls.enabled).
#
#   hack/make-certs.sh [--out DIR] [--namespace NS] [--days N] [--from-cluster] [NODE...]
#
# Writes into DIR (default ./nfd-certs):
#   ca.crt, ca.key                  the CA (kept and reused when DIR already has one, so adding
#                                   a node does not invalidate the other certificates)
#   master.crt, master.key          server certificate for the nfd-master Service
#                                   (DNS: nfd-master, nfd-master.NS, nfd-master.NS.svc, ...)
#   workers/NODE.crt, NODE.key      one client certificate per node, CN and DNS SAN = node name,
#                                   which is what nfd-master --verify-node-name checks
#   secrets.yaml                    Secrets nfd-master-cert (ca.crt, tls.crt, tls.key) and
#                                   nfd-worker-certs (ca.crt, NODE.crt, NODE.key for every node)
#                                   in namespace NS (default node-feature-discovery)
# Then: kubectl apply -f DIR/secrets.yaml
#
# --from-cluster adds the names of all nodes from `kubectl get nodes`. Keys are ECDSA P-256.
# ca.key is the only secret that must never leave the machine: keep DIR safe (mode 0700).
set -euo pipefail

OUT=./nfd-certs
NAMESPACE=node-feature-discovery
DAYS=825
NODES=()
FROM_CLUSTER=false

die() { printf 'make-certs: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --namespace | -n) NAMESPACE=${2:?--namespace needs a name}; shift 2 ;;
    --namespace=*) NAMESPACE=${1#*=}; shift ;;
    --days) DAYS=${2:?--days needs a number}; shift 2 ;;
    --days=*) DAYS=${1#*=}; shift ;;
    --from-cluster) FROM_CLUSTER=true; shift ;;
    -h | --help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) NODES+=("$1"); shift ;;
  esac
done

[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "--days: expected a positive number, got '$DAYS'"
command -v openssl >/dev/null || die "openssl is not installed"
if $FROM_CLUSTER; then
  mapfile -t -O "${#NODES[@]}" NODES < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
fi
((${#NODES[@]})) || die "no node names given (list them, or use --from-cluster)"
# A node name becomes a file name, a Secret key and a certificate name: it must be a DNS
# subdomain, as Kubernetes requires of node names anyway.
for node in "${NODES[@]}"; do
  [[ $node =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ && ${#node} -le 253 ]] ||
    die "'$node' is not a valid node name (lower-case DNS subdomain)"
done
mapfile -t NODES < <(printf '%s\n' "${NODES[@]}" | sort -u)

umask 077
mkdir -p "$OUT/workers"
chmod 0700 "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME CN EXTFILE: CSR for $OUT/NAME.key, signed by the CA into $OUT/NAME.crt.
sign() {
  local name=$1 cn=$2 ext=$3
  openssl req -new -key "$OUT/$name.key" -subj "/O=node-feature-discovery/CN=$cn" \
    -out "$TMP/req.csr"
  openssl x509 -req -in "$TMP/req.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" \
    -CAcreateserial -CAserial "$TMP/ca.srl" -days "$DAYS" -sha256 -extfile "$ext" \
    -out "$OUT/$name.crt" 2>/dev/null
}

if [[ -s $OUT/ca.crt && -s $OUT/ca.key ]]; then
  echo "make-certs: reusing the CA in $OUT" >&2
else
  newkey "$OUT/ca.key"
  openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days "$((DAYS * 2))" \
    -subj "/O=node-feature-discovery/CN=nfd-ca" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$OUT/ca.crt"
fi

svc=nfd-master
cat >"$TMP/master.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$svc,DNS:$svc.$NAMESPACE,DNS:$svc.$NAMESPACE.svc,DNS:$svc.$NAMESPACE.svc.cluster.local,DNS:localhost,IP:127.0.0.1
EXT
[[ -s $OUT/master.key ]] || newkey "$OUT/master.key"
sign master "$svc" "$TMP/master.ext"

for node in "${NODES[@]}"; do
  cat >"$TMP/worker.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectAltName=DNS:$node
EXT
  [[ -s $OUT/workers/$node.key ]] || newkey "$OUT/workers/$node.key"
  sign "workers/$node" "$node" "$TMP/worker.ext"
done

b64() { base64 <"$1" | tr -d '\n'; }
{
  cat <<YAML
# Made by hack/make-certs.sh; apply with: kubectl apply -f secrets.yaml
apiVersion: v1
kind: Secret
metadata:
  name: nfd-master-cert
  namespace: $NAMESPACE
type: kubernetes.io/tls
data:
  ca.crt: $(b64 "$OUT/ca.crt")
  tls.crt: $(b64 "$OUT/master.crt")
  tls.key: $(b64 "$OUT/master.key")
---
apiVersion: v1
kind: Secret
metadata:
  name: nfd-worker-certs
  namespace: $NAMESPACE
type: Opaque
data:
  ca.crt: $(b64 "$OUT/ca.crt")
YAML
  # Every node made so far (also by earlier runs with the same --out).
  for crt in "$OUT"/workers/*.crt; do
    node=$(basename "$crt" .crt)
    echo "  $node.crt: $(b64 "$crt")"
    echo "  $node.key: $(b64 "$OUT/workers/$node.key")"
  done
} >"$OUT/secrets.yaml"

echo "make-certs: wrote CA, master and ${#NODES[@]} node certificate(s) to $OUT;" \
  "apply $OUT/secrets.yaml" >&2
