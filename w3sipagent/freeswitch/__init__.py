"""FreeSWITCH integration: the event-socket client (:mod:`w3sipagent.freeswitch.esl`)."""
