"""The one package that talks to LXD or Incus (through pylxd).

It hands back lxdkvm's own plain values and raises lxdkvm's own errors, so nothing else in lxdkvm
imports pylxd or knows its exception types. `daemon` says which daemon (LXD or Incus) and why;
`session.Session` is one command's access to it (one connection per project, opened once), with a
manager per resource the way pylxd has them: `server`, `networks`, `pools`, `images`, `projects`,
`profiles`, `instances` (and `idmaps` for id ranges across projects and daemons); `messages` holds the
daemon's own words for a failure and what to do; `setup`/`incussetup` install and start a daemon.
"""
