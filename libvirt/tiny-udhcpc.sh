#!/bin/sh
# udhcpc's event script in lxdkvm's tiny guest: set the leased address and the default route.
# udhcpc passes the event as $1 and the lease in $interface, $ip, $mask (prefix length), $router.
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        if [ -n "$router" ]; then
            ip route del default dev "$interface" 2>/dev/null
            for gw in $router; do ip route add default via "$gw" dev "$interface" && break; done
        fi
        ;;
esac
exit 0
