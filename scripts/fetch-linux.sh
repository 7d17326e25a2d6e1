#!/usr/bin/env bash
# Fetches what `cargo qemu --main linux` and tests/linux.rs need, with
# Debian's package tools, and says what it does:
#   - busybox-static (a static /bin/busybox for the initramfs): apt-get install;
#   - Debian's cloud kernel: the package linux-image-cloud-amd64 depends on,
#     fetched with apt-get download and unpacked with dpkg-deb -x into
#     target/linux-cloud (not installed; the runner takes the newest
#     target/linux-cloud/boot/vmlinuz-*);
#   - that kernel's headers (linux-headers-<same version>, apt-get install:
#     they land in /usr/src, where linux-driver/Makefile builds sidecar.ko
#     with kbuild), and gcc and make if missing.
# Usage: scripts/fetch-linux.sh [DIR]   (DIR defaults to target/linux-cloud)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-target/linux-cloud}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "fetch-linux: installing busybox-static (apt-get install -y busybox-static)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends busybox-static \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends busybox-static; }
fi
echo "fetch-linux: busybox: $(/bin/busybox | head -n 1)"

# The headers must match the kernel we boot: take the version from the
# unpacked kernel if there is one, else from the metapackage.
if compgen -G "$dest/boot/vmlinuz-*" >/dev/null; then
    kernel=$(ls "$dest"/boot/vmlinuz-* | tail -n 1)
    package=linux-image-${kernel##*/vmlinuz-}
else
    kernel=
    cloud_image() {
        apt-cache depends linux-image-cloud-amd64 2>/dev/null \
            | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
    }
    package=$(cloud_image)
    if [ -z "$package" ]; then
        echo "fetch-linux: apt knows no linux-image-cloud-amd64 yet: apt-get update"
        as_root apt-get update
        package=$(cloud_image)
    fi
fi
if [ -z "$package" ]; then
    echo "fetch-linux: apt-cache knows no linux-image-cloud-amd64 (run apt-get update?)" >&2
    exit 1
fi
headers=linux-headers-${package#linux-image-}
if ! dpkg -s "$headers" >/dev/null 2>&1 || ! command -v gcc >/dev/null || ! command -v make >/dev/null; then
    echo "fetch-linux: installing $headers, gcc and make for linux-driver (apt-get install)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "$headers" gcc make \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends "$headers" gcc make; }
fi
echo "fetch-linux: headers: /usr/src/$headers"

if [ -n "$kernel" ]; then
    echo "fetch-linux: kernel already there: $kernel"
    exit 0
fi
mkdir -p "$dest/debs"
echo "fetch-linux: downloading $package (apt-get download) into $dest/debs"
(cd "$dest/debs" && apt-get download "$package")
echo "fetch-linux: unpacking it into $dest (dpkg-deb -x)"
dpkg-deb -x "$dest"/debs/"$package"_*.deb "$dest"
echo "fetch-linux: kernel: $(ls "$dest"/boot/vmlinuz-* | tail -n 1)"
