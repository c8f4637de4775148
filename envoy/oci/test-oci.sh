#!/usr/bin/env bash
# End-to-end test of the OCI image: build it, push it with skopeo to a real registry
# (Debian's docker-registry) on loopback, pull it back, and check that the manifest digest
# survived the round trip and that the layer still holds exactly our plugin.wasm.
#
# Usage: envoy/oci/test-oci.sh <plugin.wasm>
# Needs skopeo, docker-registry, node, jq (`make oci-tools` installs the first two).
set -euo pipefail

WASM=${1:?usage: test-oci.sh <plugin.wasm>}
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in skopeo docker-registry node jq curl; do
  command -v "$tool" >/dev/null || { echo "test-oci: $tool is missing (make oci-tools)" >&2; exit 1; }
done

WORK=$(mktemp -d -t mea-oci-XXXXXX)
REGISTRY_PID=
cleanup() {
  if [[ -n $REGISTRY_PID ]]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Build.
DIGEST=$(node "$HERE/build-oci.mjs" "$WASM" "$WORK/image" test)
echo "test-oci: built $DIGEST"

# 2. A registry of our own on a free loopback port.
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; exit 1; }
  sleep 0.1
done
REF="127.0.0.1:$PORT/mcp-edge-auth:test"

# 3. Push, then look at what the registry holds.
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/image:test" "docker://$REF"
REMOTE=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REF")
[[ $REMOTE == "$DIGEST" ]] || { echo "test-oci: registry digest $REMOTE != built $DIGEST" >&2; exit 1; }
skopeo inspect --raw --tls-verify=false "docker://$REF" >"$WORK/manifest.json"
[[ $(jq -r '.annotations["module.wasm.image/variant"]' "$WORK/manifest.json") == compat ]]
[[ $(jq -r '.layers | length' "$WORK/manifest.json") == 1 ]]
[[ $(jq -r '.layers[0].mediaType' "$WORK/manifest.json") == application/vnd.oci.image.layer.v1.tar+gzip ]]

# 4. Pull it back (by digest, as a pinned WasmPlugin does) and compare the Wasm bytes.
skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$PORT/mcp-edge-auth@$DIGEST" "oci:$WORK/pulled:test"
LAYER=$(jq -r '.layers[0].digest' "$WORK/manifest.json" | cut -d: -f2)
mkdir "$WORK/extract"
tar -xzf "$WORK/pulled/blobs/sha256/$LAYER" -C "$WORK/extract"
[[ $(ls "$WORK/extract") == plugin.wasm ]] || { echo "test-oci: layer holds $(ls "$WORK/extract")" >&2; exit 1; }
cmp "$WASM" "$WORK/extract/plugin.wasm"
echo "test-oci: ok: pushed to and pulled from a registry, digest $DIGEST, plugin.wasm identical ($(stat -c %s "$WASM") bytes)"
