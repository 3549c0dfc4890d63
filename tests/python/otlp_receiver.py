"""An OTLP trace receiver for the tracing tests, on the OpenTelemetry
project's own protobuf definitions (opentelemetry-proto): the
collector's TraceService over gRPC and POST /v1/traces over HTTP
(protobuf bodies), as a collector serves them.

    otlp_receiver.py HTTP_PORT GRPC_PORT [MODE]

Port 0: any free port. Prints "ready HTTP_PORT GRPC_PORT" (the ports
bound), then one JSON line per span received: how it came
("http" or "grpc"), its resource's attributes, its ids (hex), name, kind
(the proto's number), times (ns), attributes, status and links. MODE
"refuse" answers every export with HTTP 503 / gRPC UNAVAILABLE (nothing
is printed but a line {"refused": N} per export of N spans); "quiet"
accepts every export and prints nothing (a collector for benches/load.sh).
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

LOCK = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def report(transport, request):
    """One line per span of an ExportTraceServiceRequest; the count."""
    n = 0
    for rs in request.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                n += 1
                line = {
                    "transport": transport,
                    "resource": resource,
                    "scope": ss.scope.name,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": attrs(s.attributes),
                    "status": {"code": s.status.code, "message": s.status.message},
                    "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in s.links],
                }
                with LOCK:
                    print(json.dumps(line), flush=True)
    return n


def count(request):
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def main():
    http_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    refuse, quiet = mode == "refuse", mode == "quiet"

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            if refuse:
                with LOCK:
                    print(json.dumps({"refused": count(request)}), flush=True)
                context.abort(grpc.StatusCode.UNAVAILABLE, "refusing on purpose")
            if not quiet:
                report("grpc", request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    grpc_port = server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()

    class Http(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            request = trace_service_pb2.ExportTraceServiceRequest()
            if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            request.ParseFromString(body)
            if refuse:
                with LOCK:
                    print(json.dumps({"refused": count(request)}), flush=True)
                self.send_response(503)
                self.end_headers()
                return
            if not quiet:
                report("http", request)
            out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", http_port), Http)
    print(f"ready {httpd.server_address[1]} {grpc_port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
