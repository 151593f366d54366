"""MLLP de-framing edge cases (HL7 v2.5.1 Appendix C.4.3; mapping-reference §4 items 1-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from interfaces.hl7.mllp import CR, EB, SB, MllpDecoder, MllpError, frame, normalise_segments
from tests.hl7_samples import sample_files

SAMPLES = sample_files()
MSG_A = b"MSH|^~\\&|RIS|X|HUB|Y|20240101120000||ORM^O01|A1|P|2.3.1\rPID|1||123\r"
MSG_B = b"MSH|^~\\&|RIS|X|HUB|Y|20240101120001||ORM^O01|B2|P|2.3.1\rPID|1||456\r"


def test_frame_wraps_message():
    assert frame(MSG_A) == b"\x0b" + MSG_A + b"\x1c\x0d"
    assert MllpDecoder.frame(b"x") == SB + b"x" + EB + CR


def test_one_frame_one_read():
    dec = MllpDecoder()
    assert dec.feed(frame(MSG_A)) == [MSG_A]
    assert dec.discarded == 0 and not dec.in_block and dec.pending == 0


def test_frame_split_into_single_bytes():
    dec = MllpDecoder()
    out: list[bytes] = []
    for i, byte in enumerate(frame(MSG_A)):
        got = dec.feed(bytes([byte]))
        out += got
        if i < len(MSG_A):  # nothing comes out before the EB arrives
            assert got == []
    assert out == [MSG_A]
    assert dec.discarded == 0  # the CR after EB arriving alone is not junk


def test_split_at_every_position():
    data = frame(MSG_A) + frame(MSG_B)
    for cut in range(len(data) + 1):
        dec = MllpDecoder()
        assert dec.feed(data[:cut]) + dec.feed(data[cut:]) == [MSG_A, MSG_B], cut
        assert dec.discarded == 0


def test_several_frames_in_one_read_keep_order():
    dec = MllpDecoder()
    assert dec.feed(frame(MSG_A) + frame(MSG_B) + frame(MSG_A)) == [MSG_A, MSG_B, MSG_A]


def test_missing_final_cr():
    dec = MllpDecoder()
    assert dec.feed(SB + MSG_A + EB + SB + MSG_B + EB) == [MSG_A, MSG_B]
    assert dec.feed(SB + b"next" + EB) == [b"next"]
    assert dec.discarded == 0


def test_partial_frame_is_held_until_complete():
    dec = MllpDecoder()
    assert dec.feed(SB + MSG_A[:10]) == []
    assert dec.in_block and dec.pending == 10
    assert dec.feed(MSG_A[10:] + EB + CR + SB + MSG_B[:5]) == [MSG_A]
    assert dec.pending == 5
    assert dec.feed(MSG_B[5:] + EB + CR) == [MSG_B]


def test_bytes_before_sb_are_discarded_and_counted():
    dec = MllpDecoder()
    assert dec.feed(b"\r\nGET / HTTP/1.0\r\n" + frame(MSG_A)) == [MSG_A]
    assert dec.discarded == 18
    assert dec.feed(b"xyz") == []
    assert dec.feed(b"12" + frame(MSG_B)) == [MSG_B]
    assert dec.discarded == 23


def test_stray_bytes_between_frames_are_discarded():
    dec = MllpDecoder()
    assert dec.feed(frame(MSG_A) + b"\n\x00\x00" + frame(MSG_B)) == [MSG_A, MSG_B]
    assert dec.discarded == 3


def test_sb_inside_open_block_restarts_it():
    dec = MllpDecoder()
    assert dec.feed(SB + b"MSH|truncated" + SB + MSG_A + EB + CR) == [MSG_A]
    assert dec.discarded == len(b"MSH|truncated") + 1


def test_empty_frame_is_a_message():
    assert MllpDecoder().feed(SB + EB + CR) == [b""]


def test_message_at_limit_is_accepted():
    dec = MllpDecoder(max_message_bytes=100)
    assert dec.feed(frame(b"x" * 100)) == [b"x" * 100]


def test_oversized_message_raises_before_eb():
    dec = MllpDecoder(max_message_bytes=100)
    assert dec.feed(SB + b"x" * 60) == []
    with pytest.raises(MllpError):
        dec.feed(b"x" * 60)


def test_oversized_message_in_one_read_raises():
    with pytest.raises(MllpError):
        MllpDecoder(max_message_bytes=100).feed(frame(b"x" * 101))


def test_junk_beyond_limit_raises():
    dec = MllpDecoder(max_message_bytes=100)
    dec.feed(b"\x00" * 90)
    with pytest.raises(MllpError):
        dec.feed(b"\xff" * 20)


def test_junk_allowance_resets_after_a_good_frame():
    dec = MllpDecoder(max_message_bytes=100)
    for _ in range(5):
        assert dec.feed(b"\x00" * 80 + frame(b"ok")) == [b"ok"]
    assert dec.discarded == 400


def test_invalid_limit():
    with pytest.raises(ValueError):
        MllpDecoder(max_message_bytes=0)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_roundtrip_in_small_chunks(path: Path):
    msg = path.read_bytes()
    dec = MllpDecoder()
    data = frame(msg) * 2
    out: list[bytes] = []
    for i in range(0, len(data), 7):
        out += dec.feed(data[i : i + 7])
    assert out == [msg, msg]
    assert normalise_segments(msg) == msg  # samples are CR-terminated already


def test_normalise_lf_only():
    assert normalise_segments(b"MSH|a\nPID|b\n") == b"MSH|a\rPID|b\r"


def test_normalise_crlf():
    assert normalise_segments(b"MSH|a\r\nPID|b\r\n") == b"MSH|a\rPID|b\r"


def test_normalise_crlf_keeps_lf_inside_segment():
    msg = b"MSH|a\r\nOBX|1|TX|||line one\nline two\r\n"
    assert normalise_segments(msg) == b"MSH|a\rOBX|1|TX|||line one\nline two\r"


def test_normalise_keeps_lf_in_report_text_when_cr_used():
    msg = b"MSH|a\rOBX|1|TX|||line one\nline two\r\nline three\r"
    assert normalise_segments(msg) == msg


def test_normalise_no_newlines():
    assert normalise_segments(b"MSH|a") == b"MSH|a"
