"""regbench's own plugins, registered through the same hooks as anyone else's."""
