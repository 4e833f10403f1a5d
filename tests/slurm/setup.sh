#!/usr/bin/env bash
# Prepares a one-node Slurm cluster on localhost in DIR, for SlurmTests (tests/PSpawn.Cli.Tests) or by hand.
#
#   tests/slurm/setup.sh DIR [SLURMCTLD_PORT SLURMD_PORT]
#
# 1. Installs Debian's slurmctld, slurmd, slurm-client and munge with apt-get when one of their programs is
#    missing (apt's policy-rc.d keeps the packages from starting services of their own).
# 2. Writes DIR/slurm.conf (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, SlurmUser=root,
#    NodeName=localhost with this machine's CPU count; every state, spool, pid and log file under DIR) and a
#    fresh munge key DIR/munge/munge.key.
# It starts nothing: the caller starts, and stops, the daemons itself, so that it owns their pids:
#
#   munged -F --force --key-file=DIR/munge/munge.key --socket=DIR/munge/munge.socket \
#          --pid-file=DIR/munge/munged.pid --log-file=DIR/munge/munged.log --seed-file=DIR/munge/munged.seed
#   SLURM_CONF=DIR/slurm.conf slurmctld -D -f DIR/slurm.conf
#   SLURM_CONF=DIR/slurm.conf slurmd -D -N localhost -f DIR/slurm.conf
#   SLURM_CONF=DIR/slurm.conf srun -N1 -n1 pspawn run -n 4 -- PROGRAM
#
# Exit status: 0 ready; 3 the packages are missing and apt-get could not install them (the caller may skip);
# 1 anything else.
set -euo pipefail

dir=${1:?usage: setup.sh DIR [SLURMCTLD_PORT SLURMD_PORT]}
ctld_port=${2:-6817}
slurmd_port=${3:-6818}

missing=0
for program in munged mungekey slurmctld slurmd srun sinfo; do
    command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || missing=1
done
if [ "$missing" -eq 1 ]; then
    echo "setup.sh: installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge; } >"$dir/apt.log" 2>&1; then
        echo "setup.sh: apt-get could not install the Slurm packages (see $dir/apt.log):"
        tail -5 "$dir/apt.log"
        exit 3
    fi
fi

mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/log"
chmod 711 "$dir/munge"
rm -f "$dir/munge/munge.key"
if ! mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null; then
    head -c 1024 /dev/urandom >"$dir/munge/munge.key"
fi
chmod 400 "$dir/munge/munge.key"

cpus=$(nproc)
cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/setup.sh: one node (this machine) called localhost.
ClusterName=pspawntest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "setup.sh: $dir/slurm.conf ready ($cpus CPUs, ports $ctld_port/$slurmd_port)"
