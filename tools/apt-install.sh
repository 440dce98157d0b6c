#!/bin/sh
# Install Debian packages for a test server: tools/apt-install.sh PACKAGE...
# Uses apt-get as root or through password-less sudo; keeps the packages' services from starting (the tests run
# their own servers on free ports); retries once after `apt-get update`. Installer output goes to stderr. Exits
# non-zero with the reason on stderr when the packages cannot be installed.
set -u

fail() {
    echo "tools/apt-install.sh: $*" >&2
    exit 1
}

[ "$#" -gt 0 ] || fail "usage: tools/apt-install.sh PACKAGE..."
command -v apt-get >/dev/null 2>&1 || fail "no apt-get to install $*; install it by hand"
if [ "$(id -u)" -eq 0 ]; then
    root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    root="sudo -n"
else
    fail "installing $* (apt-get install $*) needs root"
fi

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $root tee "$policy" >/dev/null && $root chmod 755 "$policy" && made_policy=1
fi
cleanup() {
    if [ -n "$made_policy" ]; then
        $root rm -f "$policy"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

install() {
    $root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

if ! install "$@"; then
    echo "tools/apt-install.sh: apt-get install failed; retrying after apt-get update" >&2
    $root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed"
    install "$@" || fail "apt-get install $* failed"
fi
