#!/bin/sh
# System packages the tests need. Installs them with apt-get when running as root,
# otherwise prints exactly what to install. Keep in sync with .ci/run and the README.
PKGS="libportaudio2 espeak-ng sox libmysofa1 pulseaudio pulseaudio-utils libasound2-plugins chromium"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  exit $?
fi
echo "missing system packages:$missing"
echo "install them with:  sudo apt-get install$missing"
echo "(tests that need them are skipped with a message until they are installed)"
exit 0
