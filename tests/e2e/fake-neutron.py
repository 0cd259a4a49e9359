#!/usr/bin/python3
"""A stand-in for Neutron, which does not run here.

nova-api's server views ask Neutron for the ports and security groups of the
servers they show (GET /v2.0/ports, /v2.0/security-groups ...). Nothing is
ever scheduled in this loopback cloud, so every such list is empty: this
answers each GET with an empty collection and refuses anything else. It is
only used so that `openstack server create` can show the server it created;
it takes no part in any imagetrust decision.

usage: fake-neutron.py PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("", "/"):
            self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]})
            return
        name = path.rsplit("/", 1)[-1].removesuffix(".json").replace("-", "_")
        self._send(200, {name: []})

    def do_POST(self):
        self._send(501, {"NeutronError": {"message": "stand-in Neutron: read-only"}})

    do_PUT = do_DELETE = do_POST

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
