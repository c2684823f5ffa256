"""The dataset card beside a run's final data."""
