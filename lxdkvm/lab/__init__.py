"""A lab on the daemon: the pipeline load → check → prepare → plan → apply → status (`pipeline`), the LXD
objects it wants (`objects`), the difference to what exists (`plan`), executing it (`apply`), one change
at a time (`lock`), its files on this machine (`state`, `sshkeys`) and proof of it running (`verify`)."""
