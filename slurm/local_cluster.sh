#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying the batch scripts (docs/cluster.md).
#
#   slurm/local_cluster.sh start DIR   write DIR/slurm.conf and start munged, slurmctld and slurmd on this host,
#                                      all their files (key, socket, state, spool, logs, pid files) under DIR;
#                                      waits until the node accepts jobs, then prints the line to use it:
#                                      export SLURM_CONF=DIR/slurm.conf
#   slurm/local_cluster.sh stop DIR    cancel the cluster's jobs, wait for them to end, and stop the three
#                                      daemons that start wrote pid files for (and nothing else)
#
# Needs Debian's slurm-wlm (22.05) and munge packages (apt-get install slurm-wlm munge). It runs as the user
# who starts it (SlurmUser = SlurmdUser = that user), so jobs run as that user too; it touches neither
# /etc/slurm nor the system's munged (it has its own key and socket), and listens on two free ports of
# 127.0.0.1. The node is this host with 2 CPUs (CPUS overrides), which up to four jobs share at once.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf
# Every daemon carries this mark in its environment, and so do the slurmstepd processes slurmd starts:
# `stop` finds what is left of this cluster by it, and of no other.
mark="IBCLN_LOCAL_SLURM=$dir"

free_port() {  # print a TCP port of 127.0.0.1 that nothing listens on, from $1 upwards
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s; fail naming the logs
  local seconds=$1 what=$2
  shift 2
  local tries=$((seconds * 2))
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then
      echo "error: $what did not happen within ${seconds} s; logs: $dir/*.log" >&2
      tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

alive() {  # alive PIDFILE NAME: the pid in PIDFILE is a running NAME process
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

node_idle() { [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; }

start() {
  local user host ctld_port slurmd_port
  for tool in munged slurmctld slurmd sbatch scontrol sinfo squeue scancel; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found: apt-get install slurm-wlm munge" >&2; exit 1; }
  done
  if alive "$dir/slurmctld.pid" slurmctld; then
    echo "error: a cluster already runs from $dir (slurm/local_cluster.sh stop $dir first)" >&2
    exit 1
  fi
  user=$(id -un)
  host=$(hostname -s)
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/jobs"
  chmod 700 "$dir" "$dir/munge"
  # munged refuses a key or socket folder that others may write to; the key is this cluster's own.
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  env "$mark" munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"
  wait_for 20 "munged answering" sh -c "munge -n -S '$dir/munge/munge.socket' | unmunge -S '$dir/munge/munge.socket'"
  ctld_port=$(free_port 16817)
  slurmd_port=$(free_port $((ctld_port + 1)))
  cat >"$conf" <<EOF
# A one-node test cluster written by slurm/local_cluster.sh; everything lives in $dir.
ClusterName=ibcln-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
# No cgroups (containers often have none to give): processes are tracked through their parents.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# As on most clusters: the seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or
# reaches its time limit; finished jobs stay visible to scontrol for MinJobAge seconds.
KillWait=30
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=${CPUS:-2} State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  : >"$dir/plugstack.conf"
  env "$mark" slurmctld -c
  wait_for 30 "slurmctld answering" scontrol ping
  env "$mark" slurmd -N "$host"
  wait_for 60 "the node $host becoming idle" node_idle
  echo "export SLURM_CONF=$conf"
}

# stop_daemon PIDFILE NAME: SIGTERM the daemon start wrote PIDFILE for, then wait for it (SIGKILL after 20 s).
stop_daemon() {
  local pid tries=40
  alive "$1" "$2" || return 0
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || return 0
  while [ -e "/proc/$pid" ] && [ "$tries" -gt 0 ]; do sleep 0.5; tries=$((tries - 1)); done
  if [ -e "/proc/$pid" ]; then
    echo "warning: $2 (pid $pid) did not stop within 20 s: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

leftovers() {  # print the pids of processes (other than this shell's) that carry this cluster's mark
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}
    pid=${pid%/environ}
    [ "$pid" = $$ ] && continue
    tr '\0' '\n' 2>/dev/null <"$environ" | grep -qxF "$mark" && echo "$pid"
  done
  return 0
}

stop() {
  local jobs pids
  if alive "$dir/slurmctld.pid" slurmctld && alive "$dir/slurmd.pid" slurmd; then
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086  # one argument per job id
      scancel $jobs 2>/dev/null || true
      wait_for 60 "the cancelled jobs ending" sh -c '[ -z "$(squeue -h -o %A)" ]' || true
    fi
  fi
  stop_daemon "$dir/slurmd.pid" slurmd
  stop_daemon "$dir/slurmctld.pid" slurmctld
  stop_daemon "$dir/munged.pid" munged
  pids=$(leftovers)
  if [ -n "$pids" ]; then  # job steps slurmd started and could not end (slurmstepd outlives slurmd)
    echo "warning: processes of this cluster were still running, killed: $(echo $pids)" >&2
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  fi
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
