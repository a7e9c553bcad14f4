#!/usr/bin/env bash
# A one-node SLURM on this machine (Debian 12, root, no systemd), for the SLURM tests and for
# trying the batch scripts: installs slurm-wlm and munge if missing, writes /etc/slurm/slurm.conf
# for this host, creates a munge key, starts munged, slurmctld and slurmd as daemons, and waits
# until `sinfo` shows the node up. Idempotent: a second run finds the daemons up and only checks.
#
#   bash deploy/start-slurm.sh            # then: sinfo; srun -n1 hostname
#   SLURM_START_TIMEOUT=120 bash deploy/start-slurm.sh
set -euo pipefail

TIMEOUT=${SLURM_START_TIMEOUT:-60}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
HOST=$(hostname)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
say() { echo "start-slurm: $*"; }
t0=$(date +%s)

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null \
        || ! command -v pgrep >/dev/null; then
    say "installing slurm-wlm, munge and procps (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge procps >/dev/null
else
    say "slurm-wlm and munge already installed"
fi

# ---------------------------------------------------------------- slurm.conf
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
$SUDO mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm
new_conf=$(cat <<EOF
# Written by daskorym deploy/start-slurm.sh: one node, $HOST, $CPUS CPUs, ${MEM_MB} MB.
ClusterName=daskorym
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" | $SUDO tee "$CONF" >/dev/null
    conf_changed=1
    say "wrote $CONF ($HOST, CPUs=$CPUS, RealMemory=$MEM_MB)"
else
    say "$CONF up to date"
fi

# ---------------------------------------------------------------- munge
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
    $SUDO mkdir -p /etc/munge
    $SUDO dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
    say "created $KEY"
fi
$SUDO chown munge:munge "$KEY" /etc/munge
$SUDO chmod 400 "$KEY"
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
$SUDO chmod 755 /run/munge

running() { pgrep -x "$1" >/dev/null; }
if running munged && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    $SUDO runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 20); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n </dev/null | unmunge >/dev/null || { say "munged does not answer"; \
        tail -n 30 /var/log/munge/munged.log 2>/dev/null; exit 1; }
fi

# ---------------------------------------------------------------- slurm daemons
stop_daemon() {  # by its pid file: only the daemon this script started
    local pidfile=/run/slurm/$1.pid
    if [ -f "$pidfile" ]; then
        $SUDO kill "$(cat "$pidfile")" 2>/dev/null || true
        for _ in $(seq 20); do running "$1" || break; sleep 0.5; done
    fi
}
if [ "$conf_changed" = 1 ] && { running slurmctld || running slurmd; }; then
    say "configuration changed: restarting slurmctld and slurmd"
    stop_daemon slurmd
    stop_daemon slurmctld
fi
if running slurmctld; then say "slurmctld already running"; else
    say "starting slurmctld"; $SUDO slurmctld; fi
if running slurmd; then say "slurmd already running"; else
    say "starting slurmd"; $SUDO slurmd; fi

# ---------------------------------------------------------------- wait for the node
show_logs() {
    echo "---- ps"; ps -eo pid,user,args | grep -E 'munged|slurmctld|slurmd' | grep -v grep || true
    echo "---- sinfo"; sinfo -N -l 2>&1 || true
    echo "---- $LOG_DIR/slurmctld.log"; tail -n 40 "$LOG_DIR/slurmctld.log" 2>/dev/null || true
    echo "---- $LOG_DIR/slurmd.log"; tail -n 40 "$LOG_DIR/slurmd.log" 2>/dev/null || true
}
deadline=$(( $(date +%s) + TIMEOUT ))
resumed=0
while :; do
    state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|drained*|fail*)
            if [ "$resumed" = 0 ]; then  # e.g. left down by an earlier, unclean stop
                say "node is $state: resuming it"
                $SUDO scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "ERROR: node $HOST not up after ${TIMEOUT}s (state: '${state:-no answer}')"
        show_logs
        exit 1
    fi
    sleep 1
done
# a one-task job proves slurmctld, slurmd and munge work together (not only a cached state)
if ! timeout "$TIMEOUT" srun -n 1 -t 1 -J start-slurm-check true; then
    say "ERROR: the node is $state but a test job (srun -n 1 true) failed"
    show_logs
    exit 1
fi
say "node $HOST is $state (partition debug), test job ran, after $(( $(date +%s) - t0 ))s"
sinfo
