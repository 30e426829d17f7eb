#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, then every test in the workspace.
# Installs what the tests need when it is missing (Debian packages, cargo-nextest).
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -E 'test(mqtt)'   # extra arguments go to `cargo nextest run`
#
# Works as root (as CI runs it) or as a user with sudo.
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian packages the tests use, as "command:package". Add a line per new dependency
# (e.g. "chromium:chromium" for browser tests, "nats-server:nats-server" for the cluster).
DEB_DEPS=(
  "mosquitto:mosquitto"
  "mosquitto_pub:mosquitto-clients"
  "mosquitto_sub:mosquitto-clients"
  "chromium:chromium"
  "node:nodejs"
  "npm:npm"
)

# mosquitto lives in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: need root or sudo to run: $*" >&2
    exit 1
  fi
}

install_deb_deps() {
  local missing=() entry cmd pkg
  for entry in "${DEB_DEPS[@]}"; do
    cmd="${entry%%:*}"
    pkg="${entry#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
      case " ${missing[*]-} " in
        *" $pkg "*) ;;
        *) missing+=("$pkg") ;;
      esac
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

install_rust_components() {
  local comp
  for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
      echo "installing the $comp component"
      rustup component add "$comp"
    fi
  done
}

# npm packages of the browser tests (playwright-core drives Debian's chromium), from the
# committed lockfile.
install_npm_deps() {
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing npm packages in tests/browser"
    (cd tests/browser && npm ci --no-audit --no-fund)
  fi
}

install_deb_deps
install_npm_deps
install_rust_components
install_nextest

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo nextest"
profile=default
if [ "${CI:-}" = "true" ]; then
  profile=ci
fi
cargo nextest run --workspace --no-fail-fast --profile "$profile" "$@"
