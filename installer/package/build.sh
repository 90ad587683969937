#!/usr/bin/env bash
# Build Softadastra's Linux packages: a .deb (binary with the tray, a
# desktop entry, the icon) and a tarball of the same files for other
# distributions.
#
#   bash installer/package/build.sh [--debug] [--out DIR]
#
# Release build by default (--debug packages the debug build: what the
# package test uses, to reuse the test build). Needs cargo, dpkg-deb, and
# the tray's build packages (pkg-config libgtk-3-dev
# libayatana-appindicator3-dev). Prints the two files' paths.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
profile=release
out="$root/target/package"
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug; shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    *) echo "build.sh: unknown argument $1 (expected --debug or --out DIR)" >&2; exit 2 ;;
  esac
done
for tool in cargo dpkg-deb dpkg tar; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is needed" >&2; exit 1; }
done

cd "$root"
flags=(-p softadastra-agent --features tray --bin softadastra)
[ "$profile" = release ] && flags+=(--release)
cargo build --quiet "${flags[@]}"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/$profile/softadastra"
[ -x "$bin" ] || { echo "build.sh: no binary at $bin" >&2; exit 1; }

version="$("$bin" --version | awk '{print $2}')"
arch="$(dpkg --print-architecture)"
name="softadastra_${version}_${arch}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# The files, laid out as installed under /usr.
tree="$stage/$name"
install -D -m 0755 "$bin" "$tree/usr/bin/softadastra"
install -D -m 0644 "$here/softadastra.desktop" "$tree/usr/share/applications/softadastra.desktop"
install -D -m 0644 "$here/softadastra.svg" "$tree/usr/share/icons/hicolor/scalable/apps/softadastra.svg"
install -D -m 0644 "$root/README.md" "$tree/usr/share/doc/softadastra/README.md"
install -D -m 0644 "$root/LICENSE" "$tree/usr/share/doc/softadastra/copyright"
[ "$profile" = release ] && strip "$tree/usr/bin/softadastra" 2>/dev/null || true

# The tarball: the same tree under a versioned directory (bin/, share/).
mkdir -p "$out"
tarball="$out/softadastra-${version}-linux-${arch}.tar.gz"
tar -C "$tree" --transform "s,^usr,softadastra-${version}," -czf "$tarball" usr

# The .deb: the tree plus its control file.
mkdir -p "$tree/DEBIAN"
size_kb="$(du -sk "$tree/usr" | cut -f1)"
cat > "$tree/DEBIAN/control" <<CONTROL
Package: softadastra
Version: ${version}
Architecture: ${arch}
Maintainer: Softadastra developers <softadastra@example.invalid>
Installed-Size: ${size_kb}
Depends: libc6, libgcc-s1, libgtk-3-0, libayatana-appindicator3-1
Section: net
Priority: optional
Homepage: https://example.invalid/softadastra
Description: local-first file sync between your machines
 Point it at a folder on two or more machines and the folder stays
 identical across them, over QUIC with mutual TLS on the LAN. Changes are
 recorded durably before they are shared; it works offline and catches up.
 This package holds the agent with its system tray icon.
CONTROL
deb="$out/${name}.deb"
dpkg-deb --build --root-owner-group "$tree" "$deb" >/dev/null
echo "$deb"
echo "$tarball"
