#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for bnlab's `slurm` tests and for trying the SLURM
# launcher presets (configs/hydra/launcher/slurm*.yaml) before a real cluster.
#
#   bash scripts/slurm_cluster.sh up      # install what is missing, configure, start, wait until idle
#   bash scripts/slurm_cluster.sh status  # what runs, what sinfo and sacct say
#   bash scripts/slurm_cluster.sh down    # stop what `up` started (by the PIDs it recorded), nothing else
#
# What `up` does, each step skipped when already done (so it is idempotent):
# - installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server when a command is missing;
# - writes /etc/slurm/slurm.conf for this host (`slurmd -C`: its real CPUs and memory) and
#   /etc/slurm/slurmdbd.conf, marked as bnlab's; a config file bnlab did not write is never touched;
# - creates the munge key, starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand (no systemd);
# - registers the cluster in the accounting database and waits until `sinfo` shows the node idle.
#
# Accounting: slurmdbd over MariaDB, as on real clusters. submitit polls job states with `sacct`
# and requeues with `scontrol requeue`; without accounting every poll prints a warning and sacct
# cannot report a job's history (requeues, exit codes). The `accounting_storage/filetxt` plugin
# that once avoided a database is gone from SLURM 22.05 (Debian 12's version).
#
# Everything runs as root (SlurmUser=root): a throwaway single-user test cluster. State, logs and
# PIDs live under $BNLAB_SLURM_HOME (default /var/lib/bnlab-slurm).
set -euo pipefail

HOME_DIR=${BNLAB_SLURM_HOME:-/var/lib/bnlab-slurm}
PIDS=$HOME_DIR/pids
LOGS=$HOME_DIR/log
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by bnlab scripts/slurm_cluster.sh"
CLUSTER=bnlab
DB_PASS_FILE=$HOME_DIR/db_pass
CHANGED=0  # set when up rewrites a config file

say() { echo "slurm_cluster: $*"; }
die() { echo "slurm_cluster: error: $*" >&2; exit 2; }

alive() {  # alive NAME: the process recorded for NAME runs
    local f=$PIDS/$1.pid
    [[ -s $f ]] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    for ((i = 0; i < limit * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "$what did not come up within ${limit}s (logs: $LOGS)"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    if ((${#missing[@]})); then
        say "installing ${missing[*]} (Debian packages)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

write_conf() {  # write_conf FILE MODE: stdin into FILE unless a config bnlab did not write is there
    local file=$1 mode=$2 new
    new=$(cat)
    if [[ -e $file ]] && ! grep -qF "$MARK" "$file"; then
        die "$file exists and was not written by bnlab; move it away or start the cluster yourself"
    fi
    mkdir -p "$(dirname "$file")"
    printf '%s\n%s\n' "$MARK" "$new" >"$file.tmp" && chmod "$mode" "$file.tmp"
    if cmp -s "$file.tmp" "$file"; then rm "$file.tmp"; else mv "$file.tmp" "$file" && CHANGED=1; fi
}

configure() {
    local host node
    host=$(hostname -s)
    node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...: this machine as slurmd sees it
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
    mkdir -p "$PIDS" "$LOGS" "$HOME_DIR/state" "$HOME_DIR/spool"
    [[ -s $DB_PASS_FILE ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE")
    write_conf "$CONF" 644 <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# containers and VMs without systemd: no cgroup plugins
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# submitit requeues preempted and timed-out jobs with scontrol requeue; a requeued job waits
# cred_expire seconds before it may start again (default 120): short on the test cluster
JobRequeue=1
AuthInfo=cred_expire=10
OverTimeLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MpiDefault=none
StateSaveLocation=$HOME_DIR/state
SlurmdSpoolDir=$HOME_DIR/spool
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    write_conf "$DBD_CONF" 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(cat "$DB_PASS_FILE")
StorageLoc=slurm_acct_db
PidFile=$PIDS/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
EOF
}

start_munge() {
    alive munged && return
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating the munge key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$PIDS/munged.pid"
    wait_for 10 munged munge -n
}

start_mariadb() {
    alive mariadb && return
    # mariadbd drops to the mysql user: its PID file and log live in a folder of that user's
    local own=$HOME_DIR/mariadb
    mkdir -p /run/mysqld "$own" && chown mysql:mysql /run/mysqld "$own"
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    rm -f "$own/mariadb.pid"
    mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
        --pid-file="$own/mariadb.pid" --log-error="$own/mariadb.log" --bind-address=127.0.0.1 &>>"$own/mariadb.log" &
    disown
    wait_for 30 MariaDB mariadb -e "SELECT 1"
    cp "$own/mariadb.pid" "$PIDS/mariadb.pid"
    mariadb <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DB_PASS_FILE")';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(cat "$DB_PASS_FILE")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurm() {
    if ! alive slurmdbd; then
        slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
    fi
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    alive slurmctld || slurmctld
    wait_for 30 slurmctld scontrol ping
    alive slurmd || slurmd
    wait_for 60 "the node (idle in sinfo)" node_idle
}

node_idle() { sinfo -h -N -o %t | grep -qx idle; }

up() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
    install_packages
    configure
    # a rewritten config reaches running daemons by a restart (scontrol reconfigure skips some keys,
    # e.g. AuthInfo's cred_expire)
    ((CHANGED == 0)) || stop slurmd slurmctld slurmdbd
    start_munge
    start_mariadb
    start_slurm
    say "up: $(sinfo -h -N -o '%N %t %c CPUs %m MB') ; accounting: $(sacctmgr -n list cluster format=cluster | xargs)"
}

stop() {  # stop NAME...: the processes up recorded for them
    for name in "$@"; do
        if alive "$name"; then
            kill "$(cat "$PIDS/$name.pid")"
            for ((i = 0; i < 80; i++)); do alive "$name" || break; sleep 0.25; done
            say "stopped $name"
        fi
        rm -f "$PIDS/$name.pid"
    done
}

down() { stop slurmd slurmctld slurmdbd mariadb munged; }  # the reverse order of up

status() {
    local rc=0
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$name"; then say "$name: running (pid $(cat "$PIDS/$name.pid"))"; else say "$name: not running"; rc=1; fi
    done
    if ((rc == 0)); then
        say "sinfo: $(sinfo -h -N -o '%N %t %c CPUs %m MB')"
        say "accounting: $(sacctmgr -n list cluster format=cluster | xargs)"
    fi
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: bash scripts/slurm_cluster.sh up|down|status" >&2; exit 2 ;;
esac
