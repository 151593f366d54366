"""MLLP server and client over real sockets on 127.0.0.1 (HL7 v2.5.1 Appendix C.4.3; IHE ITI TF-2x C.2.1).

The handler is a stand-in for the HL7 layer: it acknowledges with MSA-2 = the input's MSH-10."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from interfaces.hl7.client import MllpClient
from interfaces.hl7.mllp import EB, SB, MllpDecoder, frame
from interfaces.hl7.server import MllpServer, Peer
from tests.hl7_samples import sample_files

SAMPLES = sample_files()
MLLP_SEND = Path(sys.executable).parent / "mllp_send"
LIMIT = 64 * 1024
SECRET = "Geheimnis^Johanna"  # patient-like content that must never reach the logs


def msg(control_id: str, name: str = SECRET) -> bytes:
    return (f"MSH|^~\\&|RIS|SITE|HUB|HUB|20240101120000||ORM^O01|{control_id}|P|2.3.1\r"
            f"PID|1||PID-{control_id}||{name}\r").encode()


def control_id_of(message: bytes) -> bytes:
    first = message.replace(b"\n", b"\r").split(b"\r", 1)[0]
    return first.split(first[3:4])[9]


class Recorder:
    """Test handler: records (peer, message), acknowledges with MSA|AA|<MSH-10>.
    MSH-10 starting with CRASH raises, SILENT returns None (no reply)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Peer, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, message: bytes, peer: Peer) -> bytes | None:
        with self.lock:
            self.seen.append((peer, message))
        ctrl = control_id_of(message)
        if ctrl.startswith(b"CRASH"):
            raise RuntimeError(f"cannot process {SECRET}")
        if ctrl.startswith(b"SILENT"):
            return None
        return b"MSH|^~\\&|HUB|HUB|RIS|SITE|20240101120001||ACK|A" + ctrl + b"|P|2.3.1\rMSA|AA|" + ctrl + b"\r"


def ack_id(ack: bytes) -> bytes:
    msa = [seg for seg in ack.split(b"\r") if seg.startswith(b"MSA|")][0]
    return msa.split(b"|")[2]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[MllpServer]:
    srv = MllpServer(recorder, "127.0.0.1", 0, max_message_bytes=LIMIT, idle_timeout=10)
    srv.start()
    yield srv
    srv.stop()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_frames(sock: socket.socket, n: int) -> list[bytes]:
    dec, out = MllpDecoder(), []
    while len(out) < n:
        data = sock.recv(65536)
        assert data, f"connection closed after {len(out)} of {n} replies"
        out += dec.feed(data)
    return out


def closed_cleanly(sock: socket.socket) -> bool:
    """True when the server closed with FIN (recv gives b''), False on a reset."""
    try:
        while data := sock.recv(65536):
            assert SB not in data, "server replied instead of closing"
        return True
    except ConnectionResetError:
        return False


def test_start_returns_ephemeral_port(server: MllpServer):
    assert server.port > 0
    with MllpClient("127.0.0.1", server.port) as client:
        assert ack_id(client.send(msg("P1"))) == b"P1"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_mllp_send_sample(server: MllpServer, recorder: Recorder, path: Path, tmp_path: Path):
    framed = tmp_path / "framed.hl7"
    framed.write_bytes(frame(path.read_bytes()))
    run = subprocess.run([str(MLLP_SEND), "--port", str(server.port), "--file", str(framed), "127.0.0.1"],
                         capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    ctrl = control_id_of(path.read_bytes())
    assert b"MSA|AA|" + ctrl + b"\r" in run.stdout
    assert [m for _, m in recorder.seen] == [path.read_bytes().rstrip(b"\r")]  # mllp_send strips the last CR


def test_mllp_send_all_samples_on_one_connection_in_order(server: MllpServer, recorder: Recorder, tmp_path: Path):
    raw = [p.read_bytes() for p in SAMPLES]
    framed = tmp_path / "all.hl7"
    framed.write_bytes(b"".join(frame(m) for m in raw))
    run = subprocess.run([str(MLLP_SEND), "-p", str(server.port), "-f", str(framed), "127.0.0.1"],
                         capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    acks = MllpDecoder().feed(run.stdout.replace(b"\x1c\r\n", b"\x1c\r"))
    assert [ack_id(a) for a in acks] == [control_id_of(m) for m in raw]
    assert len({peer.port for peer, _ in recorder.seen}) == 1


def test_mllp_send_loose_lf_file(server: MllpServer, recorder: Recorder, tmp_path: Path):
    lf = tmp_path / "lf.hl7"
    lf.write_bytes(SAMPLES[0].read_bytes().replace(b"\r", b"\n"))
    run = subprocess.run([str(MLLP_SEND), "--loose", "-p", str(server.port), "-f", str(lf), "127.0.0.1"],
                         capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert b"MSA|AA|" + control_id_of(SAMPLES[0].read_bytes()) in run.stdout


def test_one_byte_writes(server: MllpServer, recorder: Recorder):
    m = SAMPLES[0].read_bytes()
    with connect(server.port) as sock:
        for byte in frame(m):
            sock.sendall(bytes([byte]))
        [ack] = read_frames(sock, 1)
    assert ack_id(ack) == control_id_of(m)
    assert recorder.seen[0][1] == m


def test_several_frames_in_one_write_answered_in_order(server: MllpServer, recorder: Recorder):
    ids = [f"M{i}" for i in range(6)]
    with connect(server.port) as sock:
        sock.sendall(b"".join(frame(msg(i)) for i in ids))
        acks = read_frames(sock, len(ids))
    assert [ack_id(a).decode() for a in acks] == ids
    assert [control_id_of(m).decode() for _, m in recorder.seen] == ids


def test_missing_final_cr(server: MllpServer):
    with connect(server.port) as sock:
        sock.sendall(SB + msg("N1") + EB)
        assert ack_id(read_frames(sock, 1)[0]) == b"N1"
        sock.sendall(SB + msg("N2") + EB + SB + msg("N3") + EB)
        assert [ack_id(a) for a in read_frames(sock, 2)] == [b"N2", b"N3"]


def test_handler_returning_none_sends_nothing(server: MllpServer):
    with connect(server.port) as sock:
        sock.sendall(frame(msg("SILENT1")) + frame(msg("AFTER")))
        assert [ack_id(a) for a in read_frames(sock, 1)] == [b"AFTER"]


def test_twenty_concurrent_senders(server: MllpServer, recorder: Recorder):
    def sender(i: int) -> list[bytes]:
        with MllpClient("127.0.0.1", server.port, timeout=10) as client:
            return [ack_id(client.send(msg(f"C{i}-{j}"))) for j in range(5)]

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(sender, range(20)))
    assert results == [[f"C{i}-{j}".encode() for j in range(5)] for i in range(20)]
    by_conn: dict[int, list[bytes]] = {}
    for peer, m in recorder.seen:
        by_conn.setdefault(peer.port, []).append(control_id_of(m))
    assert len(by_conn) == 20
    for ids in by_conn.values():  # each connection's messages were handled in the order sent
        assert ids == sorted(ids, key=lambda c: int(c.split(b"-")[1]))


def test_stray_bytes_before_frame_are_ignored(server: MllpServer):
    with connect(server.port) as sock:
        sock.sendall(b"\r\n\x00junk" + frame(msg("G1")))
        assert ack_id(read_frames(sock, 1)[0]) == b"G1"


def test_binary_junk_closes_cleanly_and_server_keeps_serving(server: MllpServer, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="interfaces.hl7")
    junk = os.urandom(LIMIT + 4096).replace(SB, b"\x00")
    with connect(server.port) as sock:
        sock.sendall(junk)
        assert closed_cleanly(sock)
    with connect(server.port) as sock:
        sock.sendall(frame(msg("AFTER-JUNK")))
        assert ack_id(read_frames(sock, 1)[0]) == b"AFTER-JUNK"
    assert "framing error" in caplog.text


def test_oversized_message_closes_cleanly_and_server_keeps_serving(
    server: MllpServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="interfaces.hl7")
    big = msg("BIG") + (b"OBX|1|TX|||" + SECRET.encode() * 20 + b"\r") * (LIMIT // 200)
    assert len(big) > LIMIT
    with connect(server.port) as sock:
        sock.sendall(frame(big))
        assert closed_cleanly(sock)
    assert recorder.seen == []
    with MllpClient("127.0.0.1", server.port) as client:
        assert ack_id(client.send(msg("OK"))) == b"OK"
    assert "framing error" in caplog.text
    assert "Geheimnis" not in caplog.text


def test_handler_exception_closes_only_that_connection(
    server: MllpServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="interfaces.hl7")
    with connect(server.port) as other:
        other.sendall(frame(msg("B1")))
        assert ack_id(read_frames(other, 1)[0]) == b"B1"
        with connect(server.port) as bad:
            bad.sendall(frame(msg("CRASH1")) + frame(msg("NEVER")))
            assert closed_cleanly(bad)
        other.sendall(frame(msg("B2")))  # the other connection is untouched
        assert ack_id(read_frames(other, 1)[0]) == b"B2"
    with MllpClient("127.0.0.1", server.port) as client:
        assert ack_id(client.send(msg("FRESH"))) == b"FRESH"
    assert b"NEVER" not in b"".join(m for _, m in recorder.seen)  # nothing after the failing message
    assert "RuntimeError" in caplog.text
    assert "Geheimnis" not in caplog.text and "CRASH1" not in caplog.text


def test_client_raises_when_server_closes_without_reply(server: MllpServer):
    with MllpClient("127.0.0.1", server.port) as client, pytest.raises(ConnectionError):
        client.send(msg("CRASH2"))


def test_client_reconnects_once_after_idle_close(recorder: Recorder):
    with MllpServer(recorder, "127.0.0.1", 0, idle_timeout=0.3) as srv, MllpClient("127.0.0.1", srv.port) as client:
        assert ack_id(client.send(msg("R1"))) == b"R1"
        time.sleep(0.8)  # the server has closed the idle connection
        assert ack_id(client.send(msg("R2"))) == b"R2"
    assert len({peer.port for peer, _ in recorder.seen}) == 2


def test_max_connections_bounds_concurrent_connections(recorder: Recorder):
    with MllpServer(recorder, "127.0.0.1", 0, max_connections=2) as srv:
        first, second = connect(srv.port), connect(srv.port)
        for i, sock in enumerate((first, second)):
            sock.sendall(frame(msg(f"S{i}")))
            read_frames(sock, 1)
        third = connect(srv.port)
        third.sendall(frame(msg("WAIT")))
        third.settimeout(0.7)
        with pytest.raises(TimeoutError):
            third.recv(100)  # queued in the backlog, not served
        first.close()
        third.settimeout(5)
        assert ack_id(read_frames(third, 1)[0]) == b"WAIT"
        second.close()
        third.close()


def test_stop_closes_open_connections(recorder: Recorder):
    srv = MllpServer(recorder, "127.0.0.1", 0)
    port = srv.start()
    sock = connect(port)
    sock.sendall(frame(msg("X")))
    read_frames(sock, 1)
    srv.stop()
    assert sock.recv(100) == b""
    sock.close()
    with pytest.raises(OSError):
        connect(port, timeout=1).close()


# -- TLS -----------------------------------------------------------------------------------------


def self_signed(tmp: Path, cn: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "T")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{cn}.crt", tmp / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {"server": self_signed(tmp_path, "hub"), "client": self_signed(tmp_path, "modality-1")}


def server_context(files: dict[str, tuple[Path, Path]], require_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*files["server"])
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(files["client"][0])
    return ctx


def client_context(files: dict[str, tuple[Path, Path]], with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(files["server"][0]))
    if with_cert:
        ctx.load_cert_chain(*files["client"])
    return ctx


def test_tls_exchange(recorder: Recorder, tls_files: dict):
    with MllpServer(recorder, "127.0.0.1", 0, ssl_context=server_context(tls_files)) as srv:
        with MllpClient("127.0.0.1", srv.port, ssl_context=client_context(tls_files)) as client:
            assert ack_id(client.send(msg("T1"))) == b"T1"
            assert ack_id(client.send(SAMPLES[0].read_bytes())) == control_id_of(SAMPLES[0].read_bytes())
    peer = recorder.seen[0][0]
    assert peer.tls and peer.cert_subject is None


def test_tls_handshake_failures_do_not_kill_listener(recorder: Recorder, tls_files: dict, tmp_path: Path):
    with MllpServer(recorder, "127.0.0.1", 0, ssl_context=server_context(tls_files)) as srv:
        with connect(srv.port) as plain:  # plain MLLP against a TLS port
            plain.sendall(frame(msg("PLAIN")))
            try:
                assert plain.recv(100) == b""
            except ConnectionResetError:
                pass
        untrusting = ssl.create_default_context(cafile=str(tls_files["client"][0]))  # wrong trust anchor
        with pytest.raises(ssl.SSLCertVerificationError):
            MllpClient("127.0.0.1", srv.port, ssl_context=untrusting).send(msg("UNTRUSTED"))
        with connect(srv.port) as silent:  # closes without a handshake
            pass
        del silent
        with MllpClient("127.0.0.1", srv.port, ssl_context=client_context(tls_files)) as client:
            assert ack_id(client.send(msg("T2"))) == b"T2"
    assert [control_id_of(m) for _, m in recorder.seen] == [b"T2"]


def test_mutual_tls_reports_client_subject(recorder: Recorder, tls_files: dict):
    ctx = server_context(tls_files, require_client=True)
    with MllpServer(recorder, "127.0.0.1", 0, ssl_context=ctx) as srv:
        with MllpClient("127.0.0.1", srv.port, ssl_context=client_context(tls_files, with_cert=True)) as client:
            assert ack_id(client.send(msg("M1"))) == b"M1"
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no client certificate: refused
            MllpClient("127.0.0.1", srv.port, ssl_context=client_context(tls_files)).send(msg("NOCERT"))
    peer = recorder.seen[0][0]
    assert peer.tls and peer.cert_subject == "CN=modality-1,O=T"
    assert [control_id_of(m) for _, m in recorder.seen] == [b"M1"]
