"""A real gRPC server and client (grpcio) for the gateway's gRPC tests.
The messages are raw bytes (gRPC's framing with an identity codec), so no
generated code is needed: the service is `narrowgate.test.Echo` with one
method of each kind.

    grpc_peer.py serve PORT [CERT KEY]
        Serves on 127.0.0.1:PORT (plaintext HTTP/2; with CERT and KEY, PEM
        files, over TLS, which grpcio speaks only with ALPN h2); prints "ready", then
        one JSON line per call it receives: the method and the metadata
        the gateway sent (the identity headers, whether a credential came).

    grpc_peer.py call HOST:PORT METHOD [TOKEN [PAYLOAD [TIMEOUT]]]
        Calls METHOD (Unary, ServerStream, ClientStream, Bidi) through
        HOST:PORT (plaintext, prior-knowledge HTTP/2) with PAYLOAD ("one";
        "fail": the
        server refuses it with NOT_FOUND before any message; "forever": a
        server stream that goes on for 30 s; "pause": one whose two
        messages are 2.5 s apart; "fail-late": one that ends with ABORTED
        after a message; "cancel": "forever", which the client cancels
        after two messages; "big": 3 MiB of every byte value, as one
        message to Unary, as 100 KiB messages to ClientStream) and a
        deadline of TIMEOUT seconds (10); prints one JSON line: the status
        code's name, its details, the responses (for "big", each as
        "big:LENGTH:intact" when it is the echo expected, else "corrupted").
        METHOD "Health" asks the standard health-checking service about
        the echo service; "Reflection" lists the server's services through
        the reflection service.

The server also serves the standard health-checking service
(grpc.health.v1.Health) and server reflection
(grpc.reflection.v1alpha.ServerReflection), from grpcio's own packages.
"""

import json
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

SERVICE = "narrowgate.test.Echo"
BIG = bytes(range(256)) * (3 * 1024 * 4)


def serve(port, cert=None, key=None):
    def seen(method, context):
        md = dict(context.invocation_metadata())
        print(json.dumps({
            "method": method,
            "subject": md.get("x-narrowgate-subject"),
            "authorization": "authorization" in md,
        }), flush=True)

    def unary(request, context):
        seen("Unary", context)
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b"echo:" + request

    def server_stream(request, context):
        seen("ServerStream", context)
        if request == b"forever":
            # A watch that never ends on its own: a message every 100 ms.
            for i in range(300):
                if not context.is_active():
                    return
                yield b"%d" % i
                time.sleep(0.1)
            return
        if request == b"fail-late":
            yield b"0"
            context.abort(grpc.StatusCode.ABORTED, "gave up")
        if request == b"pause":
            # Quiet for longer than the gateway's idle timeout in the test.
            yield b"0"
            time.sleep(2.5)
            yield b"1"
            return
        for i in range(3):
            yield b"%d:" % i + request

    def client_stream(requests, context):
        seen("ClientStream", context)
        return b"+".join(requests)

    def bidi(requests, context):
        seen("Bidi", context)
        for r in requests:
            yield b"re:" + r

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    checker = health.HealthServicer()
    checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if cert:
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port("127.0.0.1:%d" % port, credentials)
    else:
        server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, method, token, payload=b"one", timeout=10.0):
    path = "/%s/%s" % (SERVICE, method)
    metadata = [("authorization", "Bearer " + token)] if token else []
    big = payload == b"big"
    pieces = [BIG[i:i + 102400] for i in range(0, len(BIG), 102400)]
    with grpc.insecure_channel(target) as channel:
        try:
            if method == "Unary":
                out = [channel.unary_unary(path)(BIG if big else payload, metadata=metadata, timeout=timeout)]
            elif method == "Health":
                stub = health_pb2_grpc.HealthStub(channel)
                reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), metadata=metadata, timeout=timeout)
                out = [health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).encode()]
            elif method == "Reflection":
                stub = reflection_pb2_grpc.ServerReflectionStub(channel)
                asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                out = [
                    s.name.encode()
                    for reply in stub.ServerReflectionInfo(asked, metadata=metadata, timeout=timeout)
                    for s in reply.list_services_response.service
                ]
            elif method == "ServerStream":
                out = []
                cancel = payload == b"cancel"
                stream = channel.unary_stream(path)(b"forever" if cancel else payload, metadata=metadata,
                                                    timeout=timeout)
                try:
                    for r in stream:
                        out.append(r)
                        if cancel and len(out) == 2:
                            stream.cancel()
                except grpc.RpcError as e:
                    print(json.dumps({"code": e.code().name, "details": e.details() or "",
                                      "responses": [r.decode() for r in out]}))
                    return
            elif method == "ClientStream":
                sent = pieces if big else [b"a", b"b", b"c"]
                out = [channel.stream_unary(path)(iter(sent), metadata=metadata, timeout=timeout)]
            elif method == "Bidi":
                out = list(channel.stream_stream(path)(iter([b"x", b"y"]), metadata=metadata, timeout=timeout))
            else:
                # A method the server does not have, called as a unary one.
                out = [channel.unary_unary(path)(payload, metadata=metadata, timeout=timeout)]
            if big:
                whole = (b"echo:" + BIG, b"+".join(pieces))
                out = [b"big:%d:%s" % (len(r), b"intact" if r in whole else b"corrupted") for r in out]
            print(json.dumps({"code": "OK", "details": "", "responses": [r.decode() for r in out]}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "details": e.details() or "", "responses": []}))


if sys.argv[1] == "serve":
    serve(int(sys.argv[2]), *sys.argv[3:5])
else:
    args = sys.argv[2:] + [""] * 3
    call(args[0], args[1], args[2], (args[3] or "one").encode(), float(args[4] or 10))
