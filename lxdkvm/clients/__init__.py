"""Other programs pointed at a lab: Ansible (`ansible`: a playbook run over the lab's inventory, host keys
checked). The ssh config that ssh, virsh and virt-install use is a lab file like its keys: `lab.sshconfig`
(pure) and `lab.sshfiles` (where it is kept)."""
