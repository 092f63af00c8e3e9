"""The use cases, one module each; they depend only on the ports and the pure core.

    channels.py     channel lifecycle (create, get, delete) and reads
    appends.py      the one append path (WebSocket, REST and Durable Streams)
    streams.py      the Durable Streams protocol over channels (create, append, live reads)
    forks.py        Durable Streams forks
    sessions.py     WebSocket connections, frames, subscriptions and replay; end_connection
    fanout.py       delivering stored messages to live subscribers
    credentials.py  API keys and tokens

bootstrap.py builds them; the handlers call them.
"""
