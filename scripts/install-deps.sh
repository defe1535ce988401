#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12's packages. Idempotent: does
# nothing (and needs no network) when everything is already there. CUDA and NCCL are not
# Debian packages: they come from /usr/local/cuda when present (the NCCL backend is
# skipped otherwise).
set -euo pipefail
packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin          # MPI backend and mpirun
  libhdf5-dev hdf5-tools              # checkpoint shards; h5dump
  libcli11-dev nlohmann-json3-dev libfmt-dev libxxhash-dev
  libyaml-cpp-dev                     # TensorRT-LLM placement files (YAML)
  libtomlplusplus-dev                 # --config job files (TOML)
  catch2                              # Catch2 2.13 (v2 API)
  python3 python3-h5py python3-numpy  # format tests read shards back with h5py
  clang libclang-rt-14-dev            # libFuzzer, ASan/UBSan runtimes (scripts/fuzz.sh)
  iproute2 util-linux                 # multi-host test: network namespaces (ip), unshare
  chromium                            # plan --svg as a browser renders it (headless test)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
