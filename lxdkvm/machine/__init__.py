"""This machine: what its kernel, CPU and devices provide (`hostcaps`), whether its kernel mounts
idmapped (`idmapmount`), which storage pool hosts go on (`storage`), and `doctor`'s verdict on all of it."""
