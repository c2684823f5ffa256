"""Record schema, I/O, run directories and dataframe stages."""
