"""Nested guests inside lab hosts: domain XML (`domain`), the built-in tiny guest (`tiny`), the in-host
agent that waits for a guest's boot and runs commands in it (`agent`), and a smoke-test initramfs
(`initramfs`)."""
