"""The run folder: config.yaml with its options records, and the folder's layout (no torch)."""
