"""Other programs pointed at a lab: Ansible (`ansible`: a playbook run over the lab's inventory, host keys
checked), ssh, virsh and virt-install (`sshconfig`: the lab's ssh config and libvirt URIs, pure;
`sshfiles`: where it is kept, and every lab's config rewritten when one lab's hosts change)."""
