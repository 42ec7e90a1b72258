"""One module per `swiftkit` command (dashes as underscores) with ``add_arguments(parser)`` and ``run(args)``."""
