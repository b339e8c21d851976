#!/usr/bin/env bash
# Debian packages the tests use: real clients and peers (swaks for SMTP,
# curl for POP3 and IMAP, python3 for its poplib and imaplib, mbsync from
# isync and mutt as IMAP clients, rspamd and redis-server started by the
# tests on loopback ports, Postfix and Dovecot's LMTP server as private
# instances on either side of our LMTP boundary), fail2ban for its fail2ban-regex
# against our filter, pebble (the ACME test CA) for certificate orders, sieve-connect
# as a ManageSieve client. Installed when missing (as root, through apt);
# otherwise named.
set -euo pipefail
APT_PACKAGES=(python3 swaks curl rspamd redis-server isync mutt postfix dovecot-lmtpd dovecot-imapd dovecot-pop3d fail2ban pebble sieve-connect)
missing=()
# "install ok installed" only: a package removed but not purged still answers `dpkg -s`.
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "mailwerk: installing ${missing[*]} for the tests ..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
elif command -v sudo >/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
else
  echo "mailwerk: the tests need these Debian packages: ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 1
fi
