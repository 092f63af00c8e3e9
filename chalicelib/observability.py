"""The logger every layer shares (Powertools, structured JSON on Lambda).

Metrics are a port (ports.Metrics), wired by bootstrap.py and flushed by app.py's middleware.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="switchboard")
