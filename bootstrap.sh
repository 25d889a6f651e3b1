# Source me from the repository's top folder:   . ./bootstrap.sh
#
# Gives this shell an lxdkvm to run, on a fresh Debian machine as much as on a warm one:
# Python 3 with venv support (from Debian's packages when missing), a virtual environment in .venv
# (Debian's own python3 refuses `pip install` outside one, PEP 668), lxdkvm and its test tools
# installed into it (editable), and the environment activated, so `invoke ...` and `lxdkvm ...` work.
# Running it again only re-checks. LXD itself is installed by `invoke lab-up` (lxdkvm setup), not here.
# It is sourced, not executed, so it must not `exit` or `set -e` the caller's shell.

lxdkvm_bootstrap() {
    if [ ! -f pyproject.toml ] || [ ! -d lxdkvm ]; then
        echo "bootstrap: run it from the lxdkvm repository's top folder" >&2
        return 1
    fi
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            echo "bootstrap: python3 with venv support is missing; install python3-venv as root" >&2
            return 1
        fi
        echo "bootstrap: installing python3 and python3-venv (apt)"
        apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv >/dev/null || {
            echo "bootstrap: apt-get could not install python3-venv" >&2
            return 1
        }
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "bootstrap: creating .venv"
        python3 -m venv .venv || return 1
    fi
    echo "bootstrap: installing lxdkvm and its test tools into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' || {
        echo "bootstrap: pip could not install lxdkvm (see above)" >&2
        return 1
    }
    . .venv/bin/activate
    echo "bootstrap: ready (.venv is active in this shell)"
}

lxdkvm_bootstrap
