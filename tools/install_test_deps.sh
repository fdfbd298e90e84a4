#!/usr/bin/env bash
# Debian/Ubuntu packages the test suite uses (run as root or with sudo):
#   dataset-fashion-mnist  a second real 10-class IDX data set (fine-tuning tests)
#   openssh-server         a throwaway sshd on 127.0.0.1 for `bench --remote` tests
#   qemu-user-static       the emulated aarch64 Python of tools/arm64_sandbox.sh
#   g++                    compiles the generated TFLite Micro C arrays back to bytes
#   gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib make
#                          cross-compile the firmware for Cortex-M (`edgemnist mcu`)
#   qemu-system-arm xz-utils  run it on emulated Cortex-M4/M7/M55 boards; unpack a TFLM tree archive
#   chromium-common libvulkan1  a software Vulkan device (SwiftShader: /usr/lib/chromium/vk_swiftshader_icd.json)
#                          and the Vulkan loader, for LiteRT's GPU accelerator (`--accelerator gpu`) on a
#                          machine without a GPU; chromium-common alone, without the browser, ships it
#   chromium               the real browser tests/test_serve_page.py drives headless (through Python's
#                          playwright, pointed at /usr/bin/chromium: no browser download)
#   gcc-avr avr-libc       cross-compile generated C for an 8-bit ATmega328P (Arduino Uno: edgemnist.micro.avr)
#   simavr libsimavr-dev   run it cycle-accurately; the library and headers build the runner that types
#                          bytes into its serial port and measures its stack (gcc, from g++ above)
#   qemu-system-misc       qemu-system-avr: run the same self-check on QEMU's Arduino Uno
#   arduino-core-avr arduino-mk  the Arduino core and the Makefile that build the Arduino library's
#                          example as the IDE would
# Tests that need one of these skip with a reason when it is missing (they fail instead when
# EDGEMNIST_REQUIRE_GROUPS names their group: tests/conftest.py).
#
# Usage: bash tools/install_test_deps.sh [--cortex-m-first | --rest]
#   --cortex-m-first: install only the Arm toolchain, make, qemu-system-arm and xz-utils, and stop (.ci/run
#   starts compiling TFLite Micro with them while the rest installs).
#   --rest: the other packages, after a --cortex-m-first run (no second package-list update).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
mode="${1:-}"
case "$mode" in ""|--cortex-m-first|--rest) ;; *) echo "usage: $0 [--cortex-m-first | --rest]" >&2; exit 2 ;; esac
if [ "$mode" != "--rest" ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib make \
    qemu-system-arm xz-utils >/dev/null
fi
if [ "$mode" = "--cortex-m-first" ]; then
  echo "Cortex-M packages installed"
  exit 0
fi
$SUDO apt-get install -y -qq dataset-fashion-mnist openssh-server qemu-user-static g++ >/dev/null
$SUDO apt-get install -y -qq gcc-avr avr-libc simavr libsimavr-dev qemu-system-misc arduino-core-avr arduino-mk >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium-common libvulkan1 >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null
echo "test packages installed"
