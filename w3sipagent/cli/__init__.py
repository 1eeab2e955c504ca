"""The ``w3sipagent`` command line (typer + rich); nothing else imports it."""
