"""Snapshots of a whole lab with its running guests: `record` (what a snapshot is, as plain data),
`guests` (saving and resuming guests' memory in a host), `lab` (take, restore, list, delete)."""
