#!/usr/bin/env bash
# One-time set-up for the real VS Code end-to-end test: Debian chromium + ripgrep, and code-server
# 4.100.3 (a real VS Code workbench served over HTTP) installed from the npm registry without its
# download scripts. Idempotent: a stamp file under the cache dir marks a finished install.
# Usage: setup_vscode_e2e.sh CACHE_DIR   (prints the code-server binary path on its last line)
set -euo pipefail
CACHE="${1:?usage: setup_vscode_e2e.sh CACHE_DIR}"
CS_VERSION=4.100.3
CS_DIR="$CACHE/code-server-$CS_VERSION"
STAMP="$CS_DIR/.installed"
export npm_config_yes=true npm_config_audit=false npm_config_fund=false
# native modules build against the installed node's headers (Debian ships them), never downloaded ones
if [ -f /usr/include/node/common.gypi ]; then export npm_config_nodedir=/usr; fi

if ! command -v chromium >/dev/null || ! command -v rg >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium/ripgrep missing and not root: cannot apt-get install them" >&2
    exit 3
  fi
  echo "installing chromium and ripgrep with apt-get" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ripgrep; } >&2; then
    echo "apt-get could not install chromium and ripgrep" >&2
    exit 3
  fi
fi

if [ ! -f "$STAMP" ]; then
  echo "installing code-server $CS_VERSION into $CS_DIR" >&2
  rm -rf "$CS_DIR"
  mkdir -p "$CS_DIR"
  cd "$CS_DIR"
  npm init -y >/dev/null
  npm install --ignore-scripts "code-server@$CS_VERSION" >&2
  V=node_modules/code-server/lib/vscode
  (cd "$V" && npm install --omit=dev --ignore-scripts >&2 \
     && npm rebuild node-pty @vscode/spdlog native-watchdog @parcel/watcher @vscode/deviceid >&2 \
     && ln -sfn node_modules node_modules.asar)
  (cd "$V/extensions" && npm install --omit=dev --ignore-scripts >&2)
  npm rebuild argon2 >&2
  mkdir -p "$V/node_modules/@vscode/ripgrep/bin"
  ln -sfn "$(command -v rg)" "$V/node_modules/@vscode/ripgrep/bin/rg"
  node_modules/.bin/code-server --version >&2
  touch "$STAMP"
fi
echo "$CS_DIR/node_modules/.bin/code-server"
