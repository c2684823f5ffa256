"""The `taskseed` command and its subcommands."""
