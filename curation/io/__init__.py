"""Reading and writing: Arrow schemas, atomic files, dataframes (pandas or cuDF), YAML
configs, worker progress counters and the packaged model files."""
