"""What lxdkvm writes for people and other tools, built as values from a lab and its status: the graph
(`graph` model and text writers, `graphviz` for pictures), the Ansible inventory (`inventory`) and the
lab file's reference (`reference`: docs/lab-file.md and schemas/lab.schema.json)."""
