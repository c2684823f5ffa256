"""The run directory: stage folders, shard files and markers, unit states, and seed
records by id."""
