"""taskseed: task-seeded synthetic Q&A data for LLM pretraining."""

__version__ = "0.1.0"
