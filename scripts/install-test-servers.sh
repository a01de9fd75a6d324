#!/usr/bin/env bash
# Install the real servers the integration tests start themselves (idempotent):
# ngircd, InspIRCd + Anope (Debian packages), openssl, Debian's chromium and chromium-driver
# (the browser test of the web page drives them through Selenium), Debian's postgresql-15
# (tests/servers/postgres.py runs its own throwaway cluster; the package's cluster never starts),
# and Synapse in its own venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need=()
command -v ngircd >/dev/null || need+=(ngircd)
command -v inspircd >/dev/null || need+=(inspircd)
command -v anope >/dev/null || [ -x /usr/sbin/anope ] || need+=(anope)
command -v openssl >/dev/null || need+=(openssl)
# tests/integration/test_web_browser.py runs exactly these two paths (nothing is downloaded).
# (--no-install-recommends below leaves out chromium's fonts: DejaVu gives the page its text.)
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list 2>/dev/null | grep -q . || need+=(fonts-dejavu-core)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian packages: ${need[*]}" >&2
    # Keep the packages' own services from starting on the default ports.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        created_policy=1
    fi
    # postgresql-common would create and start a "main" cluster on port 5432: not wanted.
    if [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
        $sudo mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/downtimebot-tests.conf >/dev/null
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    [ -z "$created_policy" ] || $sudo rm -f "$policy"
fi

"$here/install-synapse.sh" >/dev/null
