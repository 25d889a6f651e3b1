"""A lab file, read and checked: pure, no daemon, no side effects.

`yamlread` (bounded YAML with the line of every key) → `schema` (pydantic: keys, types, meanings) →
`read` (a `topology.Lab`, plain frozen data) → `checks`, `confine`, `guestchecks` (what the lab means,
what it may not do to the machine, its guests). Every problem is a `topology.Problem` with file, line,
key path and hint.
"""
