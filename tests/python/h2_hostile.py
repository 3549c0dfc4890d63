"""HTTP/2 clients built frame by frame (the `h2` package, its validation
off where a case needs it), for the gateway's HTTP/2 tests: what a
careless or hostile client sends, and what the gateway answered.

    h2_hostile.py HOST PORT CASE [TOKEN]

Prints one JSON object: what came back (statuses, resets, GOAWAY, the
number of frames sent before the connection was closed).
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import ContinuationFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame

HOST, PORT, CASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TOKEN = sys.argv[4] if len(sys.argv) > 4 else ""


def connect():
    sock = socket.create_connection((HOST, PORT), timeout=10)
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(path, extra=(), authority="gateway.test"):
    headers = [(":method", "GET"), (":scheme", "http"), (":path", path)]
    if authority is not None:
        headers.append((":authority", authority))
    if TOKEN:
        headers.append(("authorization", "Bearer " + TOKEN))
    return headers + list(extra)


def pump(sock, conn, until, deadline=10.0):
    """Read events until `until(outcome)` is true, the connection closes,
    or the deadline passes; the outcome of every stream."""
    outcome = {"streams": {}, "goaway": None, "closed": False}
    end = time.time() + deadline
    while not until(outcome) and time.time() < end:
        sock.settimeout(max(0.05, end - time.time()))
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            data = b""
            if not isinstance(sys.exc_info()[1], socket.timeout):
                outcome["closed"] = True
                break
            continue
        if not data:
            outcome["closed"] = True
            break
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            outcome["protocol_error"] = str(e)
            break
        for ev in events:
            s = outcome["streams"].setdefault(str(getattr(ev, "stream_id", 0)), {})
            if isinstance(ev, h2.events.ResponseReceived):
                s["status"] = int(dict(ev.headers)[b":status"])
                s["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
            elif isinstance(ev, h2.events.DataReceived):
                s["body"] = s.get("body", "") + ev.data.decode(errors="replace")
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                s["reset"] = int(ev.error_code)
            elif isinstance(ev, h2.events.StreamEnded):
                s["ended"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                outcome["goaway"] = int(ev.error_code)
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            outcome["closed"] = True
            break
    return outcome


def done(sid):
    return lambda o: o["goaway"] is not None or "reset" in o["streams"].get(str(sid), {}) or \
        o["streams"].get(str(sid), {}).get("ended", False)


def one(headers):
    sock, conn = connect()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    out = pump(sock, conn, done(sid))
    out["stream"] = out["streams"].get(str(sid), {})
    return out


def rapid_reset(limit, wait=0.0, extra=()):
    """Open streams and cancel each (at once, or `wait` seconds later,
    once the gateway is at work on it), until the gateway closes the
    connection or `limit` streams were opened."""
    sock, conn = connect()
    opened = 0
    out = {"goaway": None, "closed": False}
    sock.settimeout(0.001)
    while opened < limit:
        sid = conn.get_next_available_stream_id()
        try:
            conn.send_headers(sid, request_headers("/users/current/accounts/a1", extra), end_stream=True)
            if wait:
                sock.sendall(conn.data_to_send())
                time.sleep(wait)
            conn.reset_stream(sid, error_code=8)  # CANCEL
            sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            out["closed"] = True
            break
        opened += 1
        try:
            data = sock.recv(65536)
            if not data:
                out["closed"] = True
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    out["goaway"] = int(ev.error_code)
            sock.sendall(conn.data_to_send())
        except socket.timeout:
            pass
        except (OSError, h2.exceptions.ProtocolError):
            out["closed"] = True
            break
        if out["goaway"] is not None:
            break
    if out["goaway"] is None and not out["closed"]:
        rest = pump(sock, conn, lambda o: o["goaway"] is not None, deadline=3)
        out["goaway"], out["closed"] = rest["goaway"], rest["closed"]
    out["opened"] = opened
    return out


def continuation_flood(limit):
    """A HEADERS frame without END_HEADERS, then CONTINUATION frames of
    junk without end, until the gateway closes the connection."""
    sock, conn = connect()
    sid = conn.get_next_available_stream_id()
    block = conn.encoder.encode(request_headers("/users/current/accounts/a1"))
    frames = 0
    out = {"goaway": None, "closed": False}
    try:
        sock.sendall(HeadersFrame(sid, data=block, flags=[]).serialize())
        chunk = ContinuationFrame(sid, data=b"\x40\x03abc\x03xyz" * 1000, flags=[]).serialize()
        while frames < limit:
            sock.sendall(chunk)
            frames += 1
    except OSError:
        out["closed"] = True
    out["frames"] = frames
    if not out["closed"]:
        rest = pump(sock, conn, lambda o: o["goaway"] is not None, deadline=3)
        out["goaway"], out["closed"] = rest["goaway"], rest["closed"]
    else:
        try:
            sock.settimeout(1)
            data = sock.recv(65536)
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated):
                    out["goaway"] = int(ev.error_code)
        except Exception:
            pass
    return out


def through_drain(delay_ms):
    """A stream the upstream takes `delay_ms` to answer, open while the
    gateway drains: prints "sent" once it is sent, then reads frames as
    they come (h2's state machine ends the connection at the first
    GOAWAY, so the frames are read raw here, and PINGs acknowledged) until
    the connection closes: the GOAWAYs, the stream's status and end, and
    when each came."""
    sock, conn = connect()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers("/users/current/accounts/a1", [("x-echo-delay-ms", str(delay_ms))]),
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    print("sent", flush=True)
    start = time.time()
    out = {"goaways": [], "status": None, "ended_at": None, "closed": False}
    buf = b""
    sock.settimeout(15)
    while True:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not data:
            out["closed"] = True
            break
        buf += data
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9:9 + length]))
            buf = buf[9 + length:]
            at = round(time.time() - start, 3)
            if isinstance(frame, GoAwayFrame):
                out["goaways"].append({"error_code": frame.error_code, "last_stream_id": frame.last_stream_id,
                                       "at": at})
            elif isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                ack = PingFrame(0, opaque_data=frame.opaque_data)
                ack.flags.add("ACK")
                sock.sendall(ack.serialize())
            elif isinstance(frame, HeadersFrame) and frame.stream_id == sid:
                out["status"] = int(dict(conn.decoder.decode(frame.data, raw=True))[b":status"])
            if frame.stream_id == sid and "END_STREAM" in frame.flags:
                out["ended_at"] = at
    return out


if CASE == "allowed":
    result = one(request_headers("/users/current/accounts/a1"))
elif CASE == "dot-segments":
    result = one(request_headers("/users/current/accounts/a2/../a1"))
elif CASE == "encoded-slash":
    result = one(request_headers("/users/current/accounts%2Fa1"))
elif CASE == "authority-and-host":
    result = one(request_headers("/users/current/accounts/a1", [("host", "other.test")]))
elif CASE == "host-only":
    result = one(request_headers("/users/current/accounts/a1", [("host", "gateway.test")], authority=None))
elif CASE == "connection-header":
    result = one(request_headers("/users/current/accounts/a1", [("connection", "keep-alive")]))
elif CASE == "transfer-encoding":
    result = one(request_headers("/users/current/accounts/a1", [("transfer-encoding", "chunked")]))
elif CASE == "upper-case-name":
    result = one(request_headers("/users/current/accounts/a1", [("X-Upper", "1")]))
elif CASE == "unknown-pseudo":
    result = one(request_headers("/users/current/accounts/a1", [(":protocol", "websocket")]))
elif CASE == "oversized-headers":
    result = one(request_headers("/users/current/accounts/a1", [("x-big-%d" % i, "v" * 1000) for i in range(40)]))
elif CASE == "rapid-reset":
    result = rapid_reset(100000)
elif CASE == "reset-after-accept":
    # Each stream forwarded (the upstream is told to take a second) and
    # cancelled while the gateway waits for its answer.
    result = rapid_reset(100000, wait=0.005, extra=[("x-echo-delay-ms", "1000")])
elif CASE == "slow-through-drain":
    result = through_drain(2500)
elif CASE == "continuation-flood":
    result = continuation_flood(100000)
else:
    sys.exit("unknown case " + CASE)
print(json.dumps(result))
