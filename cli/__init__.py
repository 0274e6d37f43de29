"""The ``expand`` command line (:mod:`cli.main`)."""
