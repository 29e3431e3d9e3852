#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine for clbench's sweep tests: munge, MariaDB + slurmdbd (submitit
# reads job states with sacct), slurmctld and slurmd, all run as root from $CLBENCH_SLURM_DIR (default
# /tmp/clbench-slurm) with their own ports, sockets and logs, so nothing in /etc is touched. No systemd and no
# cgroups needed (proctrack/linuxproc, task/none): it runs in a container.
#
#   cluster.sh install   Debian's slurm-wlm, slurmdbd, munge and MariaDB (root + apt)
#   cluster.sh start     start everything (idempotent) and wait until the node is idle
#   cluster.sh stop      cancel the jobs and stop every daemon this script started
#   cluster.sh status    exit 0 when the cluster answers and the node takes jobs
#   cluster.sh env       the line to source to use it: export SLURM_CONF=...
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${CLBENCH_SLURM_DIR:-/tmp/clbench-slurm}
HOST=$(hostname -s)
CTLD_PORT=${CLBENCH_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
CPUS=${CLBENCH_SLURM_CPUS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
export SLURM_CONF=$DIR/etc/slurm.conf
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"

say() { echo "slurm test cluster: $*" >&2; }
fail() { say "$*"; exit 1; }

fill() {  # template -> file, with this machine's values
    sed -e "s|@DIR@|$DIR|g" -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" "$1" > "$2"
}

alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

wait_for() {  # seconds, what, command...
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if timeout 10 "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    fail "$what did not come up in ${seconds}s; logs in $DIR/log"
}

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1; }
node_takes_jobs() { case "$(node_state)" in idle|mixed|allocated) return 0 ;; *) return 1 ;; esac; }

install() {
    [ "$(id -u)" = 0 ] || fail "installing needs root"
    command -v apt-get >/dev/null || fail "installing needs apt-get (Debian/Ubuntu)"
    missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    [ -z "$missing" ] && return 0
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing) \
        >"${TMPDIR:-/tmp}/clbench-slurm-apt.log" 2>&1 || fail "apt-get install failed (${TMPDIR:-/tmp}/clbench-slurm-apt.log)"
}

start() {
    [ "$(id -u)" = 0 ] || fail "the daemons run as root here; run as root (CI does)"
    for exe in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr sinfo; do
        command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || fail "$exe is missing; run: $0 install"
    done
    export PATH=$PATH:/usr/sbin
    if status 2>/dev/null; then return 0; fi
    mkdir -p "$DIR"/{etc,munge,state,spool,run,log,db}
    chmod 755 "$DIR/munge"
    MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    fill "$HERE/slurm.conf.in" "$DIR/etc/slurm.conf"
    fill "$HERE/slurmdbd.conf.in" "$DIR/etc/slurmdbd.conf"
    chmod 600 "$DIR/etc/slurmdbd.conf"

    if ! alive munged; then
        [ -f "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
        munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
            --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    fi
    if ! alive mariadbd; then
        [ -d "$DIR/db/mysql" ] || mariadb-install-db --no-defaults --user=root --datadir="$DIR/db" \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed ($DIR/log)"
        # a throwaway database on loopback: no grant tables, a small buffer pool
        nohup mariadbd --no-defaults --user=root --datadir="$DIR/db" --socket="$DIR/run/mariadb.sock" \
            --port="$DB_PORT" --bind-address=127.0.0.1 --skip-grant-tables --innodb-buffer-pool-size=32M \
            --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" >/dev/null 2>&1 &
        wait_for 60 MariaDB mariadb-admin --no-defaults --socket="$DIR/run/mariadb.sock" ping
    fi
    alive slurmdbd || slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -n list cluster format=cluster | grep -qw clbench || sacctmgr -i add cluster clbench >/dev/null
    alive slurmctld || slurmctld
    wait_for 60 slurmctld scontrol ping
    alive slurmd || slurmd
    for _ in $(seq 120); do
        node_takes_jobs && break
        case "$(node_state)" in down*|drain*|fail*) scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;; esac
        sleep 0.5
    done
    node_takes_jobs || fail "node $HOST is $(node_state), not idle; logs in $DIR/log"
    say "up: node $HOST idle with $CPUS CPUs; export SLURM_CONF=$SLURM_CONF"
}

stop() {
    export PATH=$PATH:/usr/sbin
    [ -f "$SLURM_CONF" ] && alive slurmctld && scancel --full --quiet --user=root 2>/dev/null || true
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
        if alive "$daemon"; then
            pid=$(cat "$DIR/run/$daemon.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/run/$daemon.pid"
    done
    say "stopped"
}

status() {
    export PATH=$PATH:/usr/sbin
    [ -f "$SLURM_CONF" ] && alive munged && alive slurmdbd && alive slurmctld && alive slurmd \
        && scontrol ping >/dev/null 2>&1 && sacct -n -X -S now >/dev/null 2>&1 && node_takes_jobs
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
