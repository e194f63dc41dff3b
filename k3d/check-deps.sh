#!/bin/sh
# `make check-deps`: are the tools that `make all` runs installed, and new enough?
# Prints one line per tool and exits 1 when any is missing or too old. The commands come
# from the environment as the Makefile passes them (DOCKER, K3D, KUBECTL, HELM, PYTHON,
# NODE, NPM),
# so a command may carry arguments ("kubectl --kubeconfig=...").
set -u

DOCKER=${DOCKER:-docker}
K3D=${K3D:-k3d}
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}
PYTHON=${PYTHON:-python3}
NODE=${NODE:-node}
NPM=${NPM:-npm}

problems=""

# The first dotted version number (1.2 or 1.2.3) in the standard input, without a "v".
first_version() {
    awk 'match($0, /[0-9]+\.[0-9]+(\.[0-9]+)?/) { print substr($0, RSTART, RLENGTH); exit }'
}

# version_at_least HAVE NEED: true when HAVE >= NEED, comparing major.minor.patch as numbers.
version_at_least() {
    awk -v have="$1" -v need="$2" 'BEGIN {
        split(have, h, "."); split(need, n, ".")
        for (i = 1; i <= 3; i++) {
            if (h[i] + 0 > n[i] + 0) exit 0
            if (h[i] + 0 < n[i] + 0) exit 1
        }
        exit 0
    }'
}

# check NAME COMMAND MINIMUM HINT VERSION-ARGS...: report on one tool.
check() {
    name=$1 command=$2 minimum=$3 hint=$4
    shift 4
    # shellcheck disable=SC2086 # a command may carry its own arguments
    set -- $command "$@"
    if ! command -v "$1" >/dev/null 2>&1; then
        printf 'MISSING  %-8s not found (%s); needs %s or newer. Install: %s\n' \
            "$name" "$1" "$minimum" "$hint"
        problems="$problems $name"
        return 1
    fi
    version=$("$@" 2>/dev/null | first_version)
    if [ -z "$version" ]; then
        printf 'UNKNOWN  %-8s "%s" printed no version; needs %s or newer. Install: %s\n' \
            "$name" "$*" "$minimum" "$hint"
        problems="$problems $name"
        return 1
    fi
    if ! version_at_least "$version" "$minimum"; then
        printf 'TOO OLD  %-8s %s; needs %s or newer. Upgrade: %s\n' \
            "$name" "$version" "$minimum" "$hint"
        problems="$problems $name"
        return 1
    fi
    printf 'ok       %-8s %s\n' "$name" "$version"
}

# The client alone cannot build or run anything (k3d's nodes are containers), so the
# engine must answer too.
# shellcheck disable=SC2086 # a command may carry its own arguments
if check docker "$DOCKER" 20.10.0 "https://docs.docker.com/get-docker/" --version \
    && ! $DOCKER info >/dev/null 2>&1; then
    printf 'MISSING  %-8s the client is installed, but the Docker engine does not answer (docker info failed). Start Docker Desktop or the docker service.\n' \
        "engine"
    problems="$problems docker-engine"
fi
# k3d.io/v1alpha5, the format of k3d/cluster.yaml, is read by k3d 5.5 and newer.
check k3d "$K3D" 5.5.0 "https://k3d.io/#installation" version
check kubectl "$KUBECTL" 1.25.0 "https://kubernetes.io/docs/tasks/tools/" version --client
check helm "$HELM" 3.12.0 "https://helm.sh/docs/intro/install/" version --short
# Only for `make deps` (the virtual environment of the Python tools and tests).
check python "$PYTHON" 3.11.0 "https://www.python.org/downloads/" --version
# `make ui` builds the web UI that the image serves (Vite 8 needs Node.js 20.19 or newer).
check node "$NODE" 20.19.0 "https://nodejs.org/en/download" --version
check npm "$NPM" 9.0.0 "https://nodejs.org/en/download (npm comes with Node.js)" --version

if [ -n "$problems" ]; then
    printf '\nmake all cannot run yet; missing or too old:%s\n' "$problems"
    exit 1
fi
printf '\nEverything make all needs is installed.\n'
