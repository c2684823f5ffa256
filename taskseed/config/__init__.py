"""The pipeline config: its file format, overlays and hash, named models, the `slurm:`
settings and budgets."""
