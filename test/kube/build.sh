#!/usr/bin/env bash
# Builds the real Kubernetes parts the tests run against, from the Go module proxy: kube-apiserver
# and etcd (npm test), plus kube-controller-manager, kube-scheduler and kwok with --cluster (the
# scale test). The versions and every dependency are locked by the go.mod/go.sum of the three
# modules beside this script. Binaries go to a cache folder outside the repository, keyed on
# those files and the Go version, so every clone on the machine reuses them:
#   ${NODEPREP_KUBE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nodeprep-kube}/<key>/
# Cold, on 2 cores: about 8 minutes for the API server and etcd, 14 with --cluster; warm: seconds.
#
# usage: test/kube/build.sh [--cluster] [--dir] [--if-go]
#   --cluster  also build kube-controller-manager, kube-scheduler and kwok
#   --dir      print the binaries' folder and build nothing
#   --if-go    without Go on the machine, say how to get it and exit 0 (the tests then skip)
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
here=$(cd "$(dirname "$0")" && pwd)

cluster=0 dir_only=0 if_go=0
for arg in "$@"; do
  case "$arg" in
    --cluster) cluster=1 ;;
    --dir) dir_only=1 ;;
    --if-go) if_go=1 ;;
    *) echo "usage: $0 [--cluster] [--dir] [--if-go]" >&2; exit 2 ;;
  esac
done

if ! command -v go >/dev/null 2>&1; then
  msg="test/kube/build.sh: Go is not installed, so the Kubernetes API server tests cannot run.
  Install Go 1.26 or later (Debian: apt-get install golang-go if it is recent enough, or https://go.dev/dl),
  then run: bash test/kube/build.sh"
  if [ "$if_go" = 1 ] || [ "$dir_only" = 1 ]; then echo "$msg" >&2; exit 0; fi
  echo "$msg" >&2; exit 1
fi

key=$( { cat "$here"/*/go.mod "$here"/*/go.sum; echo "$KUBERNETES_VERSION"; go env GOVERSION GOARCH; } | sha256sum | cut -c1-16)
out="${NODEPREP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodeprep-kube}/$key"
if [ "$dir_only" = 1 ]; then echo "$out"; exit 0; fi
mkdir -p "$out"

say() { printf 'kube-build: %s\n' "$*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

# build MODULE_DIR LDFLAGS NAME=PACKAGE... : the commands into $out, each moved into place only
# once whole, so a build cut short leaves nothing that looks usable.
build() {
  local module=$1 ldflags=$2; shift 2
  local names=() pkgs=() spec
  for spec in "$@"; do
    [ -x "$out/${spec%%=*}" ] && continue
    names+=("${spec%%=*}"); pkgs+=("${spec#*=}")
  done
  if [ ${#names[@]} -eq 0 ]; then say "reusing ${*%%=*} in $out"; return; fi
  local started tmp i
  started=$(date +%s)
  tmp=$(mktemp -d "$out/.build.XXXXXX")
  say "building ${names[*]} (cold: minutes)"
  # One `go build` for several commands compiles their shared packages once.
  if [ ${#pkgs[@]} -eq 1 ]; then target="$tmp/${names[0]}"; else target="$tmp/"; fi
  (cd "$here/$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$target" "${pkgs[@]}")
  for i in "${!names[@]}"; do mv "$tmp/${names[$i]}" "$out/${names[$i]}"; done
  rmdir "$tmp"
  say "built ${names[*]} in $(elapsed "$started")"
}

# Without the version stamps `--version` says v0.0.0, and kubectl and helm refuse the server.
minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

started=$(date +%s)
build etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
if [ "$cluster" = 1 ]; then
  build kubernetes "-s -w$stamp" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
  build kwok "-s -w" kwok=sigs.k8s.io/kwok/cmd/kwok
  # kwok's controller has no built-in stages: the config must carry the ones kwokctl uses, which
  # the kwok module ships (kustomize/stage/); take them from the module this build just used.
  if [ ! -s "$out/kwok-stages.yaml" ]; then
    stages=$(cd "$here/kwok" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/general/pod-create.yaml pod/general/pod-init-container-running.yaml pod/general/pod-init-container-completed.yaml \
      pod/general/pod-ready.yaml pod/general/pod-complete.yaml pod/general/pod-delete.yaml; do
      echo '---'
      cat "$stages/$f"
    done > "$out/kwok-stages.yaml.tmp"
    mv "$out/kwok-stages.yaml.tmp" "$out/kwok-stages.yaml"
    say "kwok stages from $stages"
  fi
else
  build kubernetes "-s -w$stamp" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
fi
say "ready in $(elapsed "$started"): $out"
echo "$out"
