#!/usr/bin/env bash
# Builds the byzgossip container image from a locally built binary, FROM scratch (nothing is
# pulled), and prints its size.
#
#   deploy/build-image.sh [--binary PATH] [--tag NAME]
#
# Without --binary it builds a static binary (`cargo build --release -p byzgossip-node
# --target x86_64-unknown-linux-musl`, adding the target with rustup if needed); if that
# target cannot be had, the glibc release binary plus the exact libraries `ldd` lists. With
# --binary PATH it packs that binary (static or dynamic) as it is, stripped.
#
# Environment: PODMAN (default `podman`) and PODMAN_ARGS (e.g. `--runtime /usr/sbin/runc`);
# CONTAINERS_CONF is passed through to podman.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=localhost/byzgossip:latest
binary=
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
podman_cmd() { ${PODMAN:-podman} ${PODMAN_ARGS:-} "$@"; }

if [ -z "$binary" ]; then
  musl=x86_64-unknown-linux-musl
  if rustup target list --installed 2>/dev/null | grep -qx "$musl" || rustup target add "$musl"; then
    # ring and friends compile C; musl-gcc (Debian: musl-tools) targets musl's headers.
    if command -v musl-gcc >/dev/null; then export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}; fi
    cargo build --release -p byzgossip-node --target "$musl"
    binary=target/$musl/release/byzgossip
  else
    echo "warning: no $musl target; packing the glibc binary with its libraries" >&2
    cargo build --release -p byzgossip-node
    binary=target/release/byzgossip
  fi
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$context/data"
cp "$binary" "$root/usr/local/bin/byzgossip"
# Release builds carry debug info (profile.release.debug = 1); the image does not need it.
strip "$root/usr/local/bin/byzgossip" 2>/dev/null || echo "warning: strip failed; image keeps debug info" >&2
# A dynamic binary needs its loader and libraries at the same paths inside the image.
if ldd "$binary" >/dev/null 2>&1; then
  for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
    cp -L --parents "$lib" "$root/"
  done
fi
printf 'root:x:0:0:root:/:/sbin/nologin\nbyzgossip:x:10001:10001:byzgossip:/data:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nbyzgossip:x:10001:\n' > "$root/etc/group"
chmod 0700 "$context/data"
cp deploy/Containerfile "$context/Containerfile"

podman_cmd build --format docker --tag "$tag" --file "$context/Containerfile" "$context"
size=$(podman_cmd image inspect --format '{{.Size}}' "$tag")
echo "image $tag: $size bytes ($(( size / 1024 / 1024 )) MiB), binary $(stat -c %s "$root/usr/local/bin/byzgossip") bytes stripped"
