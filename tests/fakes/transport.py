"""A chat network that records what it was asked to send (the Transport port)."""
from __future__ import annotations

from models.ports import MessageHandler, Outgoing, Transport, TransportUnavailable


class FakeTransport(Transport):
    """A network for tests: records what it was asked to send; can be made to drop out."""

    def __init__(self, network: str = "fake"):
        self.network = network
        self.sent: list[Outgoing] = []
        self.up = True
        self.on_message: MessageHandler | None = None

    async def start(self, on_message: MessageHandler) -> None:
        self.on_message = on_message

    async def stop(self) -> None:
        self.up = False

    @property
    def connected(self) -> bool:
        return self.up

    async def send(self, message: Outgoing) -> None:
        if not self.up:
            raise TransportUnavailable(f"{self.network} is down")
        self.sent.append(message)
