#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing the SLURM profile (Debian's slurm-wlm
# 22.05 and munge, run as root without systemd or cgroups; see the project's SLURM notes).
#   scripts/slurm-cluster.sh install   apt-get install slurm-wlm munge
#   scripts/slurm-cluster.sh start     munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm-cluster.sh stop      cancel jobs, stop the daemons
# Exit status 0 on success; any failure says which step failed on stderr.
set -uo pipefail

host=$(hostname -s)
conf=/etc/slurm/slurm.conf
fail() { echo "slurm-cluster: $*" >&2; exit 1; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || fail "installing needs root"
  apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || fail "apt-get install slurm-wlm munge failed"
}

start_munge() {
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  [ -f /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key || fail "mungekey failed"
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || runuser -u munge -- munged || fail "munged did not start"
  munge -n | unmunge | grep -q Success || fail "munge credential check failed"
}

write_conf() {
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > "$conf" <<CONF
ClusterName=blockswap-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MinJobAge=600
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" = 0 ] || fail "starting the daemons needs root"
  command -v slurmctld >/dev/null || fail "slurm-wlm is not installed (run: $0 install)"
  start_munge
  write_conf
  pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
  pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n1)
    case "$state" in idle*|mixed*|allocated*) return 0 ;; esac
    sleep 1
  done
  fail "the node did not become idle within 60 s (state: ${state:-unknown})"
}

stop() {
  scancel --user="$(id -un)" >/dev/null 2>&1
  pkill -x slurmd; pkill -x slurmctld; pkill -x munged
  return 0
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
