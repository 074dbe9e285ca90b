"""`layer <op> <offset> <len> <crc32>` in the firmware's request parser (firmware/src/link/protocol.c),
compiled for the host: its arguments, and every malformed form answered with one clear error."""
import pytest

from tests.firmware.test_protocol_c import driver, one  # noqa: F401 - the compiled parser (a fixture)

LAYER = 14  # PTF_CMD_LAYER


def test_layer_arguments(driver):  # noqa: F811
    r = one(driver, b"layer 3 896 6912 DEADbeef @21")
    assert r["ok"] and r["cmd"] == "layer" and r["code"] == LAYER and r["id"] == 21
    assert r["n"] == 3 and r["offset"] == 896 and r["crc"] == 0xDEADBEEF
    r = one(driver, b"layer 0 0 6912 00000000")
    assert r["code"] == LAYER and r["n"] == 0 and r["offset"] == 0 and r["crc"] == 0 and "id" not in r
    # The firmware checks the op index and the offset against the model: any 9-digit number parses.
    r = one(driver, b"layer 999999999 999999999 6912 ffffffff")
    assert r["code"] == LAYER and r["n"] == 999999999 and r["offset"] == 999999999 and r["crc"] == 0xFFFFFFFF


@pytest.mark.parametrize("line", [
    b"layer", b"layer 1", b"layer 1 0", b"layer 1 0 6912", b"layer 1 0 6912 deadbeef 5", b"layer x 0 6912 deadbeef",
    b"layer 1 -1 6912 deadbeef", b"layer 1 0 6912 deadbee", b"layer 1 0 6912 deadbeef0", b"layer 1 0 6912 deadbeeg",
    b"layer 1 0 69x2 deadbeef", b"layer 1234567890 0 6912 deadbeef", b"layer 1 0 6912 +eadbeef",
])
def test_malformed_layer_requests(driver, line):  # noqa: F811
    r = one(driver, line)
    assert r["ok"] is False and r["cmd"] == "layer" and r["err"] == "bad_arg", line
    assert r["msg"] == "usage: layer <op index> <byte offset> <input length> <input crc32 as 8 hex digits>"


def test_layer_length_must_be_the_input_size(driver):  # noqa: F811
    for line in (b"layer 1 0 6911 deadbeef", b"layer 1 0 0 deadbeef @4"):
        r = one(driver, line)
        assert r["ok"] is False and r["err"] == "range" and r["msg"] == \
            "layer input length must equal the input tensor's size", line


def test_unknown_command_lists_layer(driver):  # noqa: F811
    r = one(driver, b"layers 1")
    assert r["err"] == "unknown_cmd" and "layer)" in r["msg"]
