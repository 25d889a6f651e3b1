"""Other programs pointed at a lab: Ansible (`ansible`: a playbook run over the lab's inventory, host keys
checked)."""
