#!/usr/bin/env bash
# build.sh [--print-key]: builds the guest kernel (Debian's linux-source-6.1 + patches/*.patch,
# tinyconfig + config.fragment) and prints the path of its bzImage.
#
# Cached: the image is stored as artifacts/kernel/images/bzImage-<key>, where <key> hashes the
# source version, the patch series and the fragment; a second run with the same inputs only
# prints the path. One source tree (artifacts/kernel/linux-<version>, unpacked once, patched in
# place: the applied series is recorded so a changed series is first reversed) and one build
# directory are reused, so a changed patch rebuilds incrementally. ccache is used when present.
# Only one build runs at a time (flock on artifacts/kernel/build.lock).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
art=${PSPAWN_KERNEL_ARTIFACTS:-$repo/artifacts/kernel}
tarball=/usr/src/linux-source-6.1.tar.xz

die() { echo "build.sh: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

source_version() {
    dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || die "linux-source-6.1 is not installed (run native/kernel/setup.sh)"
}

patch_series() {
    local p
    for p in "$here"/patches/*.patch; do
        [ -e "$p" ] && printf '%s\n' "$p"
    done
    return 0
}

series_text() {
    local p
    while IFS= read -r p; do cat "$p"; done < <(patch_series)
}

build_key() {
    { echo "recipe 1"; source_version; series_text | sha256sum; sha256sum <"$here/config.fragment"; } |
        sha256sum | cut -c1-16
}

unpack_source() {
    local tree=$1 tmp
    [ -f "$tree/.pspawn-unpacked" ] && return 0
    log "unpacking $tarball"
    tmp="$tree.tmp.$$"
    rm -rf "$tmp" "$tree"
    mkdir -p "$tmp"
    tar -xJf "$tarball" -C "$tmp" --strip-components=1
    : >"$tmp/.pspawn-applied"
    touch "$tmp/.pspawn-unpacked"
    mv "$tmp" "$tree"
}

# Brings the tree to the current series: reverses what was applied before, applies the new one.
sync_patches() {
    local tree=$1 wanted
    wanted=$(mktemp)
    series_text >"$wanted"
    if cmp -s "$wanted" "$tree/.pspawn-applied"; then
        rm -f "$wanted"
        return 0
    fi
    if [ -s "$tree/.pspawn-applied" ]; then
        log "reversing the previous patch series"
        patch -d "$tree" -p1 -R -s -f <"$tree/.pspawn-applied" || die "cannot reverse the old series"
        : >"$tree/.pspawn-applied"
    fi
    if [ -s "$wanted" ]; then
        log "applying the patch series"
        patch -d "$tree" -p1 -s -f --no-backup-if-mismatch <"$wanted" || die "the patch series does not apply"
    fi
    mv "$wanted" "$tree/.pspawn-applied"
}

# Configures when the fragment or the patch series (which may add Kconfig symbols) changed,
# then checks that every option the fragment asks for made it into .config.
configure() {
    local tree=$1 out=$2 stamp opt
    stamp=$({ sha256sum <"$here/config.fragment"; series_text | sha256sum; } | sha256sum)
    [ -f "$out/.config" ] && [ "$(cat "$out/.pspawn-config-stamp" 2>/dev/null)" = "$stamp" ] && return 0
    log "configuring (tinyconfig + config.fragment)"
    rm -f "$out/.pspawn-config-stamp"
    "${make[@]}" -C "$tree" O="$out" tinyconfig </dev/null >/dev/null
    (cd "$out" && "$tree/scripts/kconfig/merge_config.sh" -m -O "$out" .config "$here/config.fragment") \
        </dev/null >/dev/null 2>&1
    "${make[@]}" -C "$tree" O="$out" olddefconfig </dev/null >/dev/null
    while IFS= read -r opt; do
        grep -qx "$opt" "$out/.config" || die "config.fragment asks for $opt; .config does not have it"
    done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$here/config.fragment")
    echo "$stamp" >"$out/.pspawn-config-stamp"
}

main() {
    local key tree out image
    key=$(build_key)
    [ "${1:-}" = "--print-key" ] && { echo "$key"; return 0; }
    image="$art/images/bzImage-$key"
    [ -f "$image" ] && { echo "$image"; return 0; }

    mkdir -p "$art/images"
    exec 9>"$art/build.lock"
    flock 9
    [ -f "$image" ] && { echo "$image"; return 0; }

    tree="$art/linux-$(source_version)"
    out="$art/build"
    make=(nice -n 19 make -s -j2)
    if command -v ccache >/dev/null; then
        export CCACHE_DIR=${CCACHE_DIR:-$art/ccache} CCACHE_BASEDIR=$art CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
        make+=("CC=ccache gcc")
    fi
    unpack_source "$tree"
    sync_patches "$tree"
    mkdir -p "$out"
    configure "$tree" "$out"
    log "building $key (nice -n 19, -j2)"
    "${make[@]}" -C "$tree" O="$out" bzImage </dev/null >&2
    cp "$out/arch/x86/boot/bzImage" "$image.tmp.$$"
    mv "$image.tmp.$$" "$image"
    echo "$image"
}

main "$@"
