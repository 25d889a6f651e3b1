#!/bin/sh
# The command server of lxdkvm's tiny guest, on the second serial port (busybox init gives it ttyS1 as
# stdin/stdout). lxdkvm's agent (lxdkvm/guests/agent.py) talks to it over the domain's unix socket:
#   → RUN <id> <base64 of a shell command>
#   ← OUT <id> <base64 of the command's combined stdout and stderr>
#   ← END <id> <exit code>
# Raw mode without echo first, so the tty neither echoes requests nor rewrites newlines. Other lines
# are ignored; one command runs at a time.
stty -echo raw 2>/dev/null
while read -r verb id payload; do
    [ "$verb" = RUN ] || continue
    out="/tmp/lxdkvm-agent.$$.out"
    printf '%s' "$payload" | base64 -d > /tmp/lxdkvm-agent.$$.cmd 2>/dev/null
    sh /tmp/lxdkvm-agent.$$.cmd < /dev/null > "$out" 2>&1
    code=$?
    printf 'OUT %s %s\nEND %s %s\n' "$id" "$(base64 -w 0 "$out")" "$id" "$code"
    rm -f "$out" /tmp/lxdkvm-agent.$$.cmd
done
