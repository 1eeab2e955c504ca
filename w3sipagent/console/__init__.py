"""The operator web console: static HTML, CSS and JavaScript under ``static/``, served by the
API at ``/console/`` (see :mod:`w3sipagent.api.console`); no build step, no asset from the
internet."""
