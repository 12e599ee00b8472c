#!/usr/bin/env bash
# Installs, from Debian's packages, whatever of the named commands is missing:
#   scripts/need-debian.sh COMMAND:PACKAGE ...
# One apt-get update for all of them. Where apt-get is missing or not root, or the install fails,
# it says what is missing and how to install it, and the caller carries on without (exit 0).
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1 || test -x "/usr/sbin/$1"; }
missing=()
for spec in "$@"; do
  cmd="${spec%%:*}" pkg="${spec#*:}"
  have "$cmd" && continue
  [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (Debian packages)…" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) && exit 0
fi
echo "warning: could not install ${missing[*]}; as root: apt-get update && apt-get install -y ${missing[*]}" >&2
exit 0
