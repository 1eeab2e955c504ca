"""The control plane: tenants, stores, agents, DIDs, trunks and destinations in the records
database (:mod:`~w3sipagent.control.repo`), the snapshot the live tenant table is built from
(:mod:`~w3sipagent.control.snapshot`), routing answers for FreeSWITCH
(:mod:`~w3sipagent.control.routing`), API tokens and the audit trail. The HTTP API on top
is :mod:`w3sipagent.api`."""
