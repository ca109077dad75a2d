#!/bin/sh
# Debian packages for training the tiny model (not part of scripts/setup.sh: CI never trains).
# libopenblas0-pthread: with Debian's default reference BLAS torch runs about 15x slower.
set -e
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get install -y python3-torch python3-numpy python3-matplotlib bible-kjv libopenblas0-pthread
