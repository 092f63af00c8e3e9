"""Use cases: the WebSocket side — connections, frames, subscriptions with exact replay.

A connection ends in exactly one place, :meth:`SessionService.end_connection`, whatever ended
it ($disconnect, a post that found the socket Gone while answering a frame, or the fan-out
finding it Gone), so anything that must happen when a connection ends happens once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..core import frames
from ..core.capabilities import PUBLISH, SUBSCRIBE, Principal
from ..core.channels import ChannelMeta
from ..core.errors import InternalError, SwitchboardError, TooLargeError, UnavailableError
from ..core.messages import NewMessage, StoredMessage
from ..core.offsets import StartRequest, encode
from ..core.presence import member_key, presence_log
from ..core.subscriptions import Connection, Handover, Subscription, SubscriptionState
from ..observability import logger
from ..ports import (
    NO_METRICS,
    Clock,
    ConnectionGoneError,
    ConnectionSender,
    Metrics,
    SendFailedError,
    SendThrottledError,
    SubscriptionLimitError,
    SubscriptionStore,
)
from ..settings import Settings
from .appends import Appender, AppendRequest
from .channels import ChannelService
from .limits import Limiter
from .presence import PresenceService


@dataclass(frozen=True)
class WsContext:
    """Who sent a WebSocket frame and where replies go."""

    connection_id: str
    endpoint: str
    # Who is on the other end: from the $connect token (anonymous when auth is off).
    principal: Principal = field(default_factory=Principal.anonymous)
    # When the invocation must have answered (epoch ms, from the Lambda's remaining time).
    deadline_ms: int | None = None
    # When API Gateway received the frame (epoch ms, requestTimeEpoch): the only order
    # between frames of one connection, which are handled concurrently.
    received_ms: int | None = None


class SessionService:
    def __init__(
        self,
        channels: ChannelService,
        appender: Appender,
        subscriptions: SubscriptionStore,
        sender: ConnectionSender,
        settings: Settings,
        clock: Clock,
        metrics: Metrics = NO_METRICS,
        presence: PresenceService | None = None,
        limiter: Limiter | None = None,  # None: replays are not bounded (a bare test setup)
    ) -> None:
        self.channels = channels
        self.appender = appender
        self.presence = presence
        self.subscriptions = subscriptions
        self.sender = sender
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.limiter = limiter

    # -- connection lifecycle --------------------------------------------------------------

    def connect(self, ctx: WsContext) -> None:
        now = self.clock.now_ms()
        self.subscriptions.put_connection(
            Connection(
                connection_id=ctx.connection_id,
                endpoint=ctx.endpoint,
                connected_ms=now,
                expires_at=now // 1000 + self.settings.connection_ttl_s,
                principal=ctx.principal.publisher,
                claims=json.dumps(ctx.principal.to_claims(), separators=(",", ":")),
            )
        )

    def end_connection(self, connection_id: str) -> None:
        """The connection is gone (however we learnt it): its members leave presence, and
        it and its subscriptions are forgotten."""
        if self.presence is not None:
            try:
                self.presence.leave_connection(connection_id)
            except Exception:  # its members expire instead: never block the cleanup
                logger.exception("presence leave failed")
        self.subscriptions.delete_connection(connection_id)
        self.metrics.count("ConnectionsEnded")

    # -- frames ----------------------------------------------------------------------------

    def handle(self, ctx: WsContext, body: str | bytes | None) -> None:
        """Answer one client frame. Errors become error frames; the connection stays up."""
        ref: str | None = None
        channel: str | None = None
        try:
            frame = frames.parse_client_frame(body, self.settings.max_frame_bytes)
            ref = frame.ref
            channel = getattr(frame, "channel", None)
            logger.thread_safe_append_keys(channel=channel)
            if isinstance(frame, frames.Ping):
                self._send(ctx, frames.pong_frame(ref, self._heads(ctx, frame.channels)))
            elif isinstance(frame, frames.Publish):
                self._publish(ctx, frame)
            elif isinstance(frame, frames.Subscribe):
                self._subscribe(ctx, frame)
                if frame.presence:
                    self._follow_presence(ctx, frame)
            elif isinstance(frame, frames.Presence):
                self._presence(ctx, frame)
            else:
                self.subscriptions.unsubscribe(
                    frame.channel, ctx.connection_id, ctx.received_ms
                )
                self._send(ctx, frames.unsubscribed_frame(ref, frame.channel))
        except ConnectionGoneError:
            self.end_connection(ctx.connection_id)
        except SwitchboardError as error:
            ref = ref if ref is not None else frames.ref_of(body)
            logger.info("frame rejected", extra={"code": error.code, "ref": ref})
            self._send_quietly(ctx, frames.error_frame(error, ref, channel))
        except Exception:
            logger.exception("frame failed")
            ref = ref if ref is not None else frames.ref_of(body)
            failure = InternalError("The server failed to handle this frame; retry it.")
            self._send_quietly(ctx, frames.error_frame(failure, ref, channel))
        finally:
            logger.thread_safe_remove_keys(["channel"])

    def _heads(self, ctx: WsContext, channels: tuple[str, ...]) -> dict[str, str]:
        """The head offset of each channel (``-1`` when empty or missing): what a subscriber
        compares with the last offset it has (one GetItem and one Query per channel)."""
        now_s = self.clock.now_ms() / 1000
        heads: dict[str, str] = {}
        for name in channels:
            ctx.principal.require(name, SUBSCRIBE, now_s)
            meta = self.channels.load(name)
            if meta is None or meta.deleted:
                heads[name] = "-1"
                continue
            meta = self.channels.with_tail(meta)
            heads[name] = meta.head_offset if meta.head else "-1"
        return heads

    def _presence(self, ctx: WsContext, frame: frames.Presence) -> None:
        """This connection enters, updates, heartbeats or leaves presence on a channel."""
        presence = self._presence_service()
        key = member_key(ctx.principal.publisher, ctx.connection_id)
        if frame.op == "leave":
            presence.leave(ctx.principal, frame.channel, ctx.connection_id, ctx.deadline_ms)
            self._send(ctx, frames.presence_frame(frame.ref, frame.channel, "leave", key, None))
            return
        if frame.op == "heartbeat":
            presence.heartbeat(ctx.principal, frame.channel, ctx.connection_id)
            if frame.ref is None:  # the SDKs' heartbeats: no reply, one WebSocket message less
                return
        else:
            presence.enter(ctx.principal, frame.channel, ctx.connection_id, frame.data,
                           ctx.connection_id, ctx.deadline_ms)
        self._send(ctx, frames.presence_frame(frame.ref, frame.channel, frame.op, key,
                                              presence.heartbeat_s))

    def _follow_presence(self, ctx: WsContext, frame: frames.Subscribe) -> None:
        """A subscriber that asked for presence: its channel's presence log from now, then
        the members as they are. The log's head is read *before* the members, so every
        event at or below the snapshot's ``seq`` is in it; a client drops those (they may
        arrive before the snapshot) and applies the later ones in order: a change applied
        twice is harmless, and the state converges."""
        log = presence_log(frame.channel)
        self._subscribe(ctx, frames.Subscribe(None, log, StartRequest("now"), frame.batch))
        meta = self.channels.with_tail(self.channels.stored(log, create=True))
        members = [m.to_dict() for m in self._presence_service().members(frame.channel)]
        self._send(ctx, frames.members_frame(frame.channel, members, meta.head_offset,
                                             meta.head))

    def _presence_service(self) -> PresenceService:
        if self.presence is None:
            raise UnavailableError("Presence is not configured on this server.")
        return self.presence

    def _publish(self, ctx: WsContext, frame: frames.Publish) -> None:
        ctx.principal.require(frame.channel, PUBLISH, self.clock.now_ms() / 1000)
        body = self.channels.encode(frame.data)
        # `publisher` is who authenticated, never what the frame claims.
        outcome = self.appender.append(
            AppendRequest(
                frame.channel, [NewMessage(body, frame.id, token=frame.token)],
                implicit_create=True, publisher=ctx.principal.publisher, retry=frame.retry,
            ),
            ctx.deadline_ms,
        )
        (result,) = outcome.results
        logger.debug("published", extra={"seq": result.seq})
        self._send(ctx, frames.ack_frame(frame.ref, result))

    def _subscribe(self, ctx: WsContext, frame: frames.Subscribe) -> None:
        """Register first, then replay, then go live: nothing can fall in between."""
        ctx.principal.require(frame.channel, SUBSCRIBE, self.clock.now_ms() / 1000)
        # Only a principal that may publish (or admin) creates a missing channel.
        meta = self.channels.for_subscriber(
            frame.channel, ctx.principal.may_create(frame.channel)
        )
        after = self.channels.resolve(meta, frame.start)
        if self.limiter is None:
            self._register_and_replay(ctx, frame, meta, after)
            return
        # A long replay holds this invocation: bounded per connection and per principal.
        limits = self.limiter.replay(ctx.principal, ctx.connection_id, meta.head - after)
        with self.limiter.holding(limits, self._replay_deadline(ctx)):
            self._register_and_replay(ctx, frame, meta, after)

    def _register_and_replay(
        self, ctx: WsContext, frame: frames.Subscribe, meta: ChannelMeta, after: int
    ) -> None:
        sub = Subscription(
            channel=meta.name,
            connection_id=ctx.connection_id,
            endpoint=ctx.endpoint,
            epoch=meta.epoch,
            after_seq=after,
            state=SubscriptionState.REPLAYING,
            expires_at=self.clock.now_ms() // 1000 + self.settings.connection_ttl_s,
            batch=frame.batch,
            since_ms=ctx.received_ms if ctx.received_ms is not None else self.clock.now_ms(),
        )
        try:
            self.subscriptions.subscribe(sub, self.settings.max_subscriptions_per_connection)
        except SubscriptionLimitError:
            raise TooLargeError(
                f"A connection may hold {self.settings.max_subscriptions_per_connection} "
                "subscriptions; unsubscribe from one first or open another connection.",
                {"max_subscriptions": self.settings.max_subscriptions_per_connection},
            ) from None
        self._send(
            ctx,
            frames.subscribed_frame(
                frame.ref, meta.name, meta.epoch, encode(meta.epoch, after),
                meta.head_offset if meta.head else "-1",
            ),
        )
        self._replay(ctx, sub, meta, after)

    def _replay(self, ctx: WsContext, sub: Subscription, meta: ChannelMeta, after: int) -> None:
        """Send the backlog, then hand the subscription to the fan-out (SubscriptionState).

        While REPLAYING, only this handler sends; the fan-out notes what it held back. The
        switch to LIVE succeeds only if nothing noted is past the last seq sent; otherwise
        the rest is read and sent and the switch tried again. The fan-out notes once per
        stream batch, not per message, so even a channel written continuously lets the
        switch through within a few rounds; and nothing here reads or writes the channel's
        item, so joining a busy channel never makes a publisher retry.
        """
        deadline = self._replay_deadline(ctx)
        cursor, replayed = after, 0
        while True:
            page = self.channels.read_after(meta, cursor, self.settings.replay_page, to_end=True)
            cursor, replayed = self._send_page(ctx, sub, page, cursor, replayed)
            if len(page) < self.settings.replay_page:
                handover = self.subscriptions.go_live(sub, cursor)
                if handover is not Handover.BEHIND:
                    break
            self._check_replay_deadline(sub, meta, cursor, deadline)
        self.metrics.count("MessagesReplayed", replayed)

    def _replay_deadline(self, ctx: WsContext) -> int:
        return ctx.deadline_ms or (
            self.clock.now_ms() + int(self.settings.replay_budget_s * 1000)
        )

    def _send_page(
        self, ctx: WsContext, sub: Subscription, page: list[StoredMessage], cursor: int,
        replayed: int,
    ) -> tuple[int, int]:
        for _count, frame in frames.message_frames(page, sub.batch):
            self._send(ctx, frame)
        return (page[-1].seq if page else cursor), replayed + len(page)

    def _check_replay_deadline(
        self, sub: Subscription, meta: ChannelMeta, cursor: int, deadline: int
    ) -> None:
        """A replay that would outlast the invocation stops where it is; the client
        subscribes again from the offset it reached (the SDKs do)."""
        if self.clock.now_ms() < deadline:
            return
        self.subscriptions.unsubscribe(sub.channel, sub.connection_id, sub.since_ms)
        raise UnavailableError(
            f"The replay of {sub.channel!r} paused at the offset in 'detail' to stay within "
            "this invocation's time; subscribe again from it to continue.",
            {"channel": sub.channel, "offset": encode(meta.epoch, cursor), "resume": True},
        )

    def _send(self, ctx: WsContext, data: str) -> None:
        self.sender.send(ctx.endpoint, ctx.connection_id, data)

    def _send_quietly(self, ctx: WsContext, data: str) -> None:
        try:
            self._send(ctx, data)
        except ConnectionGoneError:
            self.end_connection(ctx.connection_id)
        except (SendThrottledError, SendFailedError):
            logger.warning("could not deliver an error frame")
