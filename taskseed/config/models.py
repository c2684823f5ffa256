"""The models a config can name under `models:`: any backend of generation/backends.

A stage names the model it uses (`model: judge`); `teacher` is the generator, configured
under `teacher:`. Each model has its own backend, concurrency, request cache and budget
line (`budget.models.<name>`).
"""

from taskseed.generation.backends.catalog import BACKENDS, ModelConfig

__all__ = ["BACKENDS", "ModelConfig"]
