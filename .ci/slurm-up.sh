#!/usr/bin/env bash
# Bring up a single-node SLURM cluster (slurmctld + slurmd + slurmdbd on MariaDB, munge auth)
# on this machine, with one fake GPU. No systemd here: every daemon is started by hand and its
# pid written to $SLURM_PIDS so .ci/slurm-down.sh can stop exactly those.
set -euo pipefail
SLURM_PIDS=${SLURM_PIDS:-/tmp/serialct-slurm.pids}
# a cluster this script started before is stopped first (its pids are in the file)
[ -s "$SLURM_PIDS" ] && SLURM_PIDS="$SLURM_PIDS" bash "$(dirname "$0")/slurm-down.sh"
: > "$SLURM_PIDS"

missing=0
for tool in munged mariadbd mysqladmin slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
  command -v "$tool" >/dev/null || missing=1
done
if [ "$missing" -eq 1 ]; then
  echo "slurm: installing slurm-wlm munge slurmdbd mariadb-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
fi

node=$(hostname -s)
mem_mb=$(( $(free -m | awk '/^Mem:/{print $2}') - 2048 ))
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge /run/mysqld
chown munge:munge /run/munge 2>/dev/null || true
chown mysql:mysql /run/mysqld 2>/dev/null || true

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=serialct
SlurmctldHost=$node
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$node
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=$node CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
printf 'AutoDetect=off\nName=gpu File=/dev/null\n' > /etc/slurm/gres.conf
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=$node
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
chmod 600 /etc/slurm/slurmdbd.conf

[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
su -s /bin/sh munge -c "munged -F" >/dev/null 2>&1 &
for _ in $(seq 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.5; done
cat /run/munge/munged.pid >> "$SLURM_PIDS"   # munged itself, not the su around it
mariadbd --user=mysql >/var/log/slurm/mariadb.log 2>&1 & echo $! >> "$SLURM_PIDS"
for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
slurmdbd -D >/var/log/slurm/slurmdbd.out 2>&1 & echo $! >> "$SLURM_PIDS"
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -i add cluster serialct >/dev/null 2>&1 || true
slurmctld -D >/var/log/slurm/slurmctld.out 2>&1 & echo $! >> "$SLURM_PIDS"
slurmd -D >/var/log/slurm/slurmd.out 2>&1 & echo $! >> "$SLURM_PIDS"
sacctmgr -i add account serialct >/dev/null 2>&1 || true
sacctmgr -i add user root account=serialct >/dev/null 2>&1 || true
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break; sleep 1; done
sinfo
srun -N1 -n1 hostname
echo "slurm: up (pids in $SLURM_PIDS)"
