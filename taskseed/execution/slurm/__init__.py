"""Slurm: array-task execution, the job graph and the sbatch scripts."""
