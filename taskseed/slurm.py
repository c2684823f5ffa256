"""`python -m taskseed.slurm`: the command every Slurm job runs (see taskseed.execution.slurm)."""

import sys

from taskseed.execution.slurm.tasks import main

if __name__ == "__main__":
    sys.exit(main())
