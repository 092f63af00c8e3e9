"""The example agent: runs requested on a channel, each streamed into its own channel.

Run it next to ``switchboard dev`` (which starts it for you)::

    python -m examples.agent --url http://127.0.0.1:8765

See ``worker.py`` for the pattern and docs/console.md for the messages it exchanges.
"""

from .models import FakeModel, Model, Steer, model_from_env
from .worker import REQUESTS_CHANNEL, Worker, run_channel

__all__ = [
    "REQUESTS_CHANNEL",
    "FakeModel",
    "Model",
    "Steer",
    "Worker",
    "model_from_env",
    "run_channel",
]
