"""The plugin seam: hook specifications, the manager, and the types plugins build on."""
