"""What a run shows: the summary, status, progress, inspect, the dataset card and the
HTML report."""
