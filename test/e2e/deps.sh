#!/usr/bin/env bash
# Installs what the end-to-end tests need, if it is missing:
#   - nginx with the njs module (Debian's nginx-light and libnginx-mod-http-js),
#   - the pinned OpenAI Node SDK in test/e2e/node (npm ci from package-lock.json).
# Go and Node.js (20 or later) must already be there.
# Usage: test/e2e/deps.sh    (as root, or as a user who may sudo)
set -euo pipefail
cd "$(dirname "$0")"

NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo "$@"
	fi
}

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

if ! have_nginx || [ ! -f "$NJS_MODULE" ]; then
	echo "deps.sh: installing nginx-light and libnginx-mod-http-js"
	# Keep the package from starting the system's nginx on port 80: the
	# tests run their own nginx, and a port already in use would make the
	# package's configuration step fail. Only a policy this script added is
	# removed again.
	added_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
		added_policy=1
	fi
	trap '[ -n "$added_policy" ] && as_root rm -f /usr/sbin/policy-rc.d' EXIT
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light libnginx-mod-http-js
fi

command -v node >/dev/null 2>&1 || { echo "deps.sh: node not found: install Node.js 20 or later" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "deps.sh: npm not found: install npm with Node.js" >&2; exit 1; }

# node_modules is current when it was installed from this package-lock.json.
stamp=node/node_modules/.deps-lock.sha256
want=$(sha256sum node/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "deps.sh: npm ci in test/e2e/node"
	(cd node && npm ci --no-audit --no-fund)
	echo "$want" >"$stamp"
fi
echo "deps.sh: nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///'), njs module, node $(node --version), openai $(node -p 'require("./node/node_modules/openai/package.json").version')"
