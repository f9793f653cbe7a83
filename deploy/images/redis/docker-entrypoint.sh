#!/usr/bin/env bash
# `redis-server [config-file] [--option value ...]`: drop root to the redis
# user when started as root, and default protected mode to off (the official
# image builds Redis that way); options given later still override it.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
    set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ]; then
    if [ "$(id -u)" = '0' ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    shift
    if [ $# -gt 0 ] && [ "${1:0:1}" != '-' ]; then
        conf="$1"
        shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
    umask 0077
fi

exec "$@"
