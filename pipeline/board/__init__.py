"""The board conversation over serial: framing (:mod:`.protocol`), the pyserial client
(:mod:`.client`) and the measurement read-back (:mod:`.measure`). The only package that opens a
serial port; it does not know whether the board is real or emulated (the board says so in ``info``).
"""
from pipeline.board.client import BoardClient, BoardError, ChecksumError, InferResult, LinkStats
from pipeline.board.measure import measure, smallest_ok_arena, source_label, sweep_arena
from pipeline.board.protocol import (
    PROTOCOL_VERSION,
    LineReader,
    Reply,
    RequestError,
    check_reply_line,
    encode_request,
    frame_reply,
    parse_reply_line,
)

__all__ = [
    "PROTOCOL_VERSION", "BoardClient", "BoardError", "ChecksumError", "InferResult", "LineReader", "LinkStats",
    "Reply", "RequestError", "check_reply_line", "encode_request", "frame_reply", "measure", "parse_reply_line",
    "smallest_ok_arena", "source_label", "sweep_arena",
]
