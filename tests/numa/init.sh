#!/bin/busybox sh
# /init of the NUMA test guest (tests/numa/run-guest.sh builds the initramfs).
# Mounts what psmem needs, runs the command in /psmem/cmd (one line, run by
# sh in /psmem), prints its exit status and hands it to the host through
# QEMU's isa-debug-exit port (0xf4: qemu exits with status*2+1).
# PSMEM_NUMA_REQUIRE and PSMEM_TEST_FILTER come from the kernel command line
# (the kernel passes unknown NAME=value parameters to init as environment).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /tmp
mount -t tmpfs -o size=75% shm /dev/shm
mount -t tmpfs tmp /tmp
echo "psmem-guest: $(grep -c ^processor /proc/cpuinfo) CPUs, NUMA nodes: $(cat /sys/devices/system/node/online)"
cd /psmem
sh -c "$(cat /psmem/cmd)"
rc=$?
# what the kernel did to processes (an OOM kill shows as a node killed by
# signal 9), and the free memory of each NUMA node, for a failed run's log
dmesg | grep -i -E 'out of memory|oom|killed process' | sed 's/^/psmem-guest: kernel: /' | head -20
for n in /sys/devices/system/node/node[0-9]*; do
	echo "psmem-guest: $(basename "$n") $(grep -o 'MemFree: *[0-9]* kB' "$n/meminfo")"
done
echo "psmem-guest: exit $rc"
[ $rc -gt 120 ] && rc=120
# one byte to port 0xf4 (244) through /dev/port: qemu exits with rc*2+1
printf "\\$(printf %03o $rc)" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
# not reached when the device is there; otherwise the host sees no status
poweroff -f
