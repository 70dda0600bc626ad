"""Upstream servers for airlock's egress tests, run inside a network
namespace the test creates. Every request and datagram is logged, so a test
can assert that a refused attempt never arrived.

HTTP on :8080 and :8081, HTTPS on :443 (cert given), UDP on :5353.
  GET  /hello          -> "hello from upstream"
  GET  /big?bytes=N    -> N bytes
  GET  /slow?ms=N      -> waits N ms, then "slow"
  POST /echo           -> the body
"""
import http.server, socketserver, ssl, sys, threading, time, urllib.parse, socket

addr, cert, key, log_path = sys.argv[1:5]
log_lock = threading.Lock()


def log(line):
    with log_lock, open(log_path, "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        log(f"{port} GET {self.path} host={self.headers.get('Host')}")
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/hello":
            self.reply(200, b"hello from upstream\n")
        elif u.path == "/big":
            n = int(q["bytes"][0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while n > 0:
                    c = chunk[: min(n, len(chunk))]
                    self.wfile.write(c)
                    n -= len(c)
            except OSError:
                pass
        elif u.path == "/slow":
            time.sleep(int(q["ms"][0]) / 1000)
            self.reply(200, b"slow\n")
        else:
            self.reply(404, b"no such path\n")

    def do_POST(self):
        port = self.server.server_address[1]
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
        shown = body if len(body) <= 200 else body[:200] + b"..."
        log(f"{port} POST {self.path} host={self.headers.get('Host')} len={len(body)} body={shown!r}")
        self.reply(200, body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


servers = [Server((addr, 8080), Handler), Server((addr, 8081), Handler)]
tls = Server((addr, 443), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
servers.append(tls)
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((addr, 5353))


def udp_loop():
    while True:
        data, peer = udp.recvfrom(65535)
        log(f"UDP from {peer[0]} {data!r}")


threading.Thread(target=udp_loop, daemon=True).start()
print("READY", flush=True)
sys.stdin.read()  # runs until the test closes our stdin (or kills us)
