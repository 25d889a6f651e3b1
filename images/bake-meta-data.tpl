# lxdkvm baked KVM-host image: cloud-init runs at the local stage (see images/bake-lean-boot.sh)
instance-id: {{ container.name }}
local-hostname: {{ container.name }}
dsmode: local
{{ config_get("user.meta-data", "") }}
