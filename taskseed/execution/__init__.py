"""Running a pipeline: the engine, the local Dask executor, shard commits, plans, rounds,
managed servers and Slurm."""
