"""A lab file, read and checked: pure, no daemon, no side effects.

`yamlread` (bounded YAML with the line of every key) → `controls` (no control character in any key or
value) → `schema` (pydantic: keys, types, meanings) → `read` (a `topology.Lab`, plain frozen data) →
`checks`, `keys` (the allow-list of instance options), `confine` (devices, subnets), `sizes` and
`guestchecks` (what the lab means, what it may not do to the machine, its guests), with `values` (the
syntax of each value) and `userdata` (cloud-init user-data through the same bounded reader). Every
problem is a `topology.Problem` with file, line, key path and hint.
"""
