"""Attacks on lxdkvm from inside a lab: what a compromised host or guest can make lxdkvm do on this machine."""
