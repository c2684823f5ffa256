"""Decontamination against held-out eval sets: the eval items, the n-gram and near-copy
indexes, the `decontaminate` stage and the optional semantic pass."""
