"""Local API Gateway + Lambda emulation over moto: what ``switchboard dev`` runs.

Modules: ``server`` (startup, the CLI entry point, :class:`~.server.DevServer` for in-process
use), ``gateway`` (REST, WebSocket and Management API on one port), ``rest`` (HTTP -> Chalice
proxy events), ``events`` (API Gateway / Lambda event shapes), ``pump`` (the DynamoDB stream
trigger), ``protocol`` (32 KB outbound frames), ``moto_patch`` (atomic, fast transactions).
"""
