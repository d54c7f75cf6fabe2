#!/bin/sh
# Build every stand-in image under the exact name the shop's compose files and Dockerfile use.
#   build-all.sh WORKDIR [NAME...]     NAME: python python-trixie postgres redis nginx minio mailpit
#                                      (default: every image the shop uses: python-trixie, not python)
# Each stand-in also answers to the official images' common aliases (postgres:17, postgres:17-trixie,
# redis:7, nginx:stable, ...): `docker tag` any other name your files use.
# WORKDIR: a scratch directory for the debootstrap trees (~700 MB). Needs root, debootstrap,
# a running Docker engine, and network access to the Debian archive and PyPI (builds use
# --network host). Env: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (see base/mkbase.sh),
# PG_MAJOR (17), MOTO_VERSION (5.2.5), BUILD_NETWORK (host), EXTRA_CA_CERT (PEM of extra CAs).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
workdir="$1"; shift
mkdir -p "$workdir"
[ $# -gt 0 ] || set -- python-trixie postgres redis nginx minio mailpit
net="${BUILD_NETWORK:-host}"
# EXTRA_CA_CERT: a PEM file of CA certificates to trust in the python and minio stand-ins (e.g. a
# TLS-intercepting proxy's, so that pip reaches PyPI, also in builds FROM the python stand-in).
secret=""
if [ -n "${EXTRA_CA_CERT:-}" ]; then secret="--secret id=extra_ca,src=$EXTRA_CA_CERT"; fi
# The two debootstrap bases, in parallel (~1 min).
pids=""
for suite in bookworm trixie; do
    if ! docker image inspect "standin-base:$suite" > /dev/null 2>&1; then
        sh "$here/base/mkbase.sh" "$suite" "$workdir" > "$workdir/mkbase-$suite.log" 2>&1 &
        pids="$pids $!"
    fi
done
for pid in $pids; do wait "$pid" || { tail -20 "$workdir"/mkbase-*.log; exit 1; }; done
build() {  # build NAME TAG [ARGS...]
    name="$1"; tag="$2"; shift 2
    start=$(date +%s)
    # shellcheck disable=SC2086
    docker build --network "$net" $secret -t "$tag" "$@" "$here/$name"
    echo "== $tag built in $(( $(date +%s) - start ))s"
}
for name; do
    case "$name" in
        python) build python python:3.11-slim-bookworm ;;
        python-trixie) build python python:3.13-slim-trixie --build-arg BASE=standin-base:trixie --build-arg PY=3.13
            docker tag python:3.13-slim-trixie python:3.13-slim ;;
        postgres) pg="${PG_MAJOR:-17}"; build postgres "postgres:$pg-bookworm" --build-arg "PG_MAJOR=$pg"
            for t in "$pg" "$pg-trixie"; do docker tag "postgres:$pg-bookworm" "postgres:$t"; done ;;
        redis) build redis redis:7-alpine; docker tag redis:7-alpine redis:7 ;;
        nginx) build nginx nginx:stable-alpine; docker tag nginx:stable-alpine nginx:stable ;;
        minio)
            build minio minio/mc:latest --target mc --build-arg "MOTO_VERSION=${MOTO_VERSION:-5.2.5}"
            build minio minio/minio:latest --target minio --build-arg "MOTO_VERSION=${MOTO_VERSION:-5.2.5}" ;;
        mailpit) build mailpit axllent/mailpit:latest ;;
        *) echo "unknown stand-in: $name" >&2; exit 2 ;;
    esac
done
docker images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -v '^<none>'
