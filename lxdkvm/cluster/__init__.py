"""LXD clusters as a target: the local sandbox cluster (`sandbox`), members and placement (`placement`),
networks stretched across members (`stretch`)."""
