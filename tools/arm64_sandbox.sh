#!/usr/bin/env bash
# Build an emulated aarch64 (Raspberry Pi 4/5-class) Python with edgemnist's device install.
#
# Usage: tools/arm64_sandbox.sh [DIR] [MODEL.tflite ...]   (default DIR: <repo>/.cache/arm64)
#        DIR/bin/python3 -m edgemnist.cli eval MODEL.tflite --json
#
# With models given, it then runs `edgemnist eval` (first EVAL_LIMIT=1000 test digits) and
# `edgemnist bench` on each of them under emulation.
#
# User-mode QEMU runs Debian 12's arm64 python3.11 directly: the arm64 .deb files are
# extracted into DIR/root (no root filesystem image, no binfmt registration), the aarch64
# wheels of numpy and ai-edge-litert are unzipped into DIR/site, and the pure-Python
# edgemnist package is copied there too. Running it again reuses what is already built
# and refreshes only the edgemnist copy. Needs root for apt (qemu-user-static and the
# arm64 package lists) and a reachable package index for pip.
#
# Settings (environment):
#   LITERT_VERSION  ai-edge-litert for aarch64 (default 1.4.0: 2.3.0's aarch64 wheel
#                   segfaults inside Interpreter() under qemu-user 7.2)
#   NUMPY_VERSION   numpy for aarch64 (default 2.2.6)
#   PYTHON          the host Python whose pip downloads the wheels (default: the repo's
#                   .venv/bin/python when present, else python3)
#
# Timings measured under this emulation are the emulator's speed, never a board's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$REPO/.cache/arm64"
MODELS=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *.tflite) MODELS+=("$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")") ;;
        *) DIR="$arg" ;;
    esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
LITERT_VERSION="${LITERT_VERSION:-1.4.0}"
NUMPY_VERSION="${NUMPY_VERSION:-2.2.6}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

# The arm64 Debian packages python3.11 needs to start and import numpy and LiteRT.
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libstdc++6
      libgcc-s1 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0
      libncursesw6 libtinfo6 libreadline8 libuuid1 libcrypt1 libdb5.3 libnsl2 libtirpc3)
WHEEL_PLATFORMS=(--platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64
                 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64)
APT=(apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o APT::Sandbox::User=root)
START=$SECONDS

say() { echo "arm64_sandbox: $*" >&2; }
die() { say "error: $*"; exit 1; }

# 1. The emulator.
if ! command -v qemu-aarch64-static >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "qemu-aarch64-static is missing; run as root or: sudo apt-get install qemu-user-static"
    say "installing qemu-user-static"
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q qemu-user-static >/dev/null \
        || { "${APT[@]}" update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q qemu-user-static >/dev/null; } \
        || die "apt-get install qemu-user-static failed"
fi

# 2. Debian's arm64 python3.11 and the libraries it links, extracted into DIR/root.
ROOT_STAMP="$DIR/root/.edgemnist-debs"
if [[ ! -f "$ROOT_STAMP" || "$(cat "$ROOT_STAMP")" != "${DEBS[*]}" ]]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64 \
        || ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
        [[ $(id -u) -eq 0 ]] || die "the arm64 package lists are missing; as root: dpkg --add-architecture arm64 && apt-get update"
        say "adding the arm64 architecture to apt"
        dpkg --add-architecture arm64
        "${APT[@]}" update -q >/dev/null || die "apt-get update failed"
    fi
    say "downloading ${#DEBS[@]} arm64 packages"
    rm -rf "$DIR/debs" "$DIR/root"
    mkdir -p "$DIR/debs" "$DIR/root"
    (cd "$DIR/debs" && "${APT[@]}" download -q "${DEBS[@]/%/:arm64}" >/dev/null) \
        || die "apt-get download of the arm64 packages failed"
    for deb in "$DIR"/debs/*.deb; do dpkg -x "$deb" "$DIR/root"; done
    [[ -x "$DIR/root/usr/bin/python3.11" ]] || die "$DIR/root/usr/bin/python3.11 missing after extraction"
    echo "${DEBS[*]}" > "$ROOT_STAMP"
fi

# 3. aarch64 wheels (no dependencies: LiteRT's interpreter needs only numpy).
SITE_STAMP="$DIR/site/.edgemnist-wheels"
WANT="numpy==$NUMPY_VERSION ai-edge-litert==$LITERT_VERSION"
if [[ ! -f "$SITE_STAMP" || "$(cat "$SITE_STAMP")" != "$WANT" ]]; then
    say "downloading aarch64 wheels: $WANT"
    rm -rf "$DIR/wheels" "$DIR/site"
    mkdir -p "$DIR/wheels" "$DIR/site"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version 3.11 --implementation cp "${WHEEL_PLATFORMS[@]}" --no-deps \
        -d "$DIR/wheels" $WANT || die "pip download of the aarch64 wheels failed"
    for whl in "$DIR"/wheels/*.whl; do
        "$PYTHON" -m zipfile -e "$whl" "$DIR/site"
    done
    echo "$WANT" > "$SITE_STAMP"
fi

# 4. edgemnist itself: pure Python, copied fresh every run (shipped MNIST included).
rm -rf "$DIR/site/edgemnist"
cp -r "$REPO/edgemnist" "$DIR/site/edgemnist"
find "$DIR/site/edgemnist" -name __pycache__ -type d -prune -exec rm -rf {} +

# 5. A launcher, so the sandbox reads like any other Python.
mkdir -p "$DIR/bin"
cat > "$DIR/bin/python3" <<EOF
#!/bin/sh
# Emulated aarch64 Python 3.11 (qemu-user). Timings here are the emulator's, not a board's.
# Like site-packages, the sandbox's folder comes after the caller's PYTHONPATH.
# The runtime's crash-isolating model check starts its child through this launcher too.
export EDGEMNIST_PYTHON="$DIR/bin/python3"
PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}$DIR/site" exec qemu-aarch64-static -L "$DIR/root" "$DIR/root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$DIR/bin/python3"

MACHINE="$("$DIR/bin/python3" -c 'import platform; print(platform.machine())')" \
    || die "the emulated python3.11 does not start"
[[ "$MACHINE" == aarch64 ]] || die "the emulated Python reports machine '$MACHINE', not aarch64"
"$DIR/bin/python3" -c 'import numpy, ai_edge_litert.interpreter' \
    || die "numpy or ai_edge_litert does not import under emulation"

say "ready in $((SECONDS - START)) s: $DIR (numpy $NUMPY_VERSION, ai-edge-litert $LITERT_VERSION)"
cat <<EOF
Run edgemnist on emulated aarch64 (timings are the emulator's, not a board's):
  $DIR/bin/python3 -m edgemnist.cli eval MODEL.tflite --json
or without the launcher:
  PYTHONPATH=$DIR/site qemu-aarch64-static -L $DIR/root $DIR/root/usr/bin/python3.11 -m edgemnist.cli bench MODEL.tflite --json
EOF

for model in "${MODELS[@]}"; do
    [[ -f "$model" ]] || die "$model: no such model file"
    echo
    echo "== $model on EMULATED aarch64 (qemu-user): accuracy is real, timings are the emulator's, not a board's"
    "$DIR/bin/python3" -m edgemnist eval "$model" --test-limit "${EVAL_LIMIT:-1000}"
    "$DIR/bin/python3" -m edgemnist.cli bench "$model" --runs 200 --warmup 20 --throughput-images 256
done
