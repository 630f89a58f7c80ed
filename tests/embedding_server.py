"""An OpenAI-compatible /v1/embeddings server on localhost that can fail on demand, for tests."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    """A /v1/embeddings endpoint on localhost that can fail on demand."""

    def __init__(self):
        self.requests = []
        self.failures = []  # statuses (or "sleep") to answer with before succeeding
        self.dimensions = 8
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                if server.failures:
                    failure = server.failures.pop(0)
                    if failure == "sleep":
                        time.sleep(0.5)
                    elif failure == "html":  # a proxy's error page, with status 200
                        self.send_response(200)
                        self.send_header("Content-Type", "text/html")
                        self.end_headers()
                        self.wfile.write(b"<html><body>Bad gateway</body></html>")
                        return
                    elif failure == "duplicate":  # two vectors claim index 0
                        self.send_response(200)
                        self.end_headers()
                        twice = [{"index": 0, "embedding": [1.0] * server.dimensions}] * 2
                        self.wfile.write(json.dumps({"data": twice}).encode())
                        return
                    else:
                        self.send_response(failure)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(
                            json.dumps({"error": {"message": f"status {failure}"}}).encode()
                        )
                        return
                data = [
                    {
                        "index": i,
                        "embedding": [float(len(text)), float(i)] + [1.0] * (server.dimensions - 2),
                    }
                    for i, text in enumerate(body["input"])
                ]
                data.reverse()  # servers may answer out of order; "index" says which is which
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"data": data, "model": body["model"]}).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
