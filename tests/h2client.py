"""A raw HTTP/2 gRPC client that reads frames (so its connection stays alive: it answers PINGs and SETTINGS)
but does not open its flow-control window: it sends no WINDOW_UPDATE, as a slow or hostile reader would,
until `start_reading()`."""

from __future__ import annotations

import socket
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class NonReadingClient:
    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port))
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.lock = threading.Lock()
        self.received = 0
        self.ended: dict[int, dict] = {}
        self.closed = threading.Event()
        self.reading = False
        self._flush()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def call(self, method: str, message: bytes, authority: str = "localhost") -> int:
        """Start a unary-stream call; returns its stream id."""
        with self.lock:
            stream = self.conn.get_next_available_stream_id()
            self.conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", method),
                                            (":authority", authority), ("content-type", "application/grpc"),
                                            ("te", "trailers")])
            self.conn.send_data(stream, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
            self._flush()
        return stream

    def _pump(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                with self.lock:
                    for event in self.conn.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            self.received += event.flow_controlled_length
                            if self.reading:
                                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, (h2.events.TrailersReceived, h2.events.StreamReset)):
                            self.ended[event.stream_id] = dict(getattr(event, "headers", None) or [])
                    self._flush()
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()

    def start_reading(self) -> None:
        """Open the window for what was received so far and everything after."""
        with self.lock:
            self.reading = True
            for stream in self.conn.streams:
                self.conn.increment_flow_control_window(2**20, stream_id=stream)
            self.conn.increment_flow_control_window(2**24)
            self._flush()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
