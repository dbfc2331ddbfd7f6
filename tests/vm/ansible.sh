# shellcheck shell=bash disable=SC1091 # /etc/os-release is the guest's
# The guest side of tests/vm_ansible.rs, in a scripts/vm guest started with --ssh: gives the
# NIC QEMU's address, lets the test's key in as root, starts sshd and says `ready` on the
# event port; then waits until the test, done with its playbooks, writes a line into
# /run/lab-done over SSH, and reports what the playbooks left on this machine under /out
# for the test to assert on.
set -eu
nic=""
for n in /sys/class/net/*; do
  case ${n##*/} in lo) ;; *) nic=${n##*/}; break ;; esac
done
[ -n "$nic" ] || { echo "lab: no network interface" >&2; exit 1; }
ip addr add 10.0.2.15/24 dev "$nic"
ip link set "$nic" up
ip route add default via 10.0.2.2
install -d -m 0700 /root/.ssh
install -m 0600 /opt/lab/authorized_keys /root/.ssh/authorized_keys
mkfifo /run/lab-done
systemctl start ssh
echo ready >"$LAB_EVENTS"

read -r _ </run/lab-done

out=/out
. /etc/os-release
echo "$VERSION_CODENAME" >"$out/codename"
dpkg-query -W -f '${Version}\n' lightsnap >"$out/version" 2>&1 || true
systemctl is-enabled lightsnap-snapshot.timer >"$out/timer-enabled" 2>&1 || true
systemctl is-active lightsnap-snapshot.timer >"$out/timer-active" 2>&1 || true
stat -c '%a %U' /root/.aws/credentials >"$out/credentials-mode" 2>&1 || true
cp /etc/lightsnap/config.d/60-ansible.toml "$out/fragment.toml" 2>/dev/null || true
cat /var/lib/lightsnap-deploy-marker >"$out/deployed" 2>/dev/null || true
lightsnap --output json status >"$out/status.json" 2>"$out/status.err" || true
