#!/usr/bin/env bash
# Install the Debian packages Phonotheca's tests and demo use, when some are missing.
# Idempotent: does nothing (and needs no network) when all are present.
set -euo pipefail
# gcc: compiles phonotheca._sha256pair at install (packing hashes more slowly without it).
# zstd: tests check that our .zst files read with the reference zstd tool.
# libchromaprint1: local acoustic fingerprints of scanned audio (phonotheca.audio.fingerprint
# loads it with ctypes; PCM comes from PyAV, so no fpcalc and no network lookup).
# mktorrent, transmission-cli, aria2, opentracker: real BitTorrent tools (peers, a tracker)
# our torrents must work with. chromium: the browser the web UI tests drive (Playwright).
# minisign: signatures of torrents.json must verify with it, and its own with us.
# ffmpeg, nginx: baselines the benchmarks measure us against; wrk: their load generator.
PACKAGES=(gcc zstd libchromaprint1 mktorrent transmission-cli aria2 opentracker chromium minisign ffmpeg nginx wrk ${PHONOTHECA_EXTRA_DEBIAN_PACKAGES:-})
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} - run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
