"""A webhook tool server for the `lookup_order` tool of examples/w3sipagent.toml.

The agent POSTs the model's JSON arguments to the tool's URL with
``Authorization: Bearer <ACME_CRM_TOKEN>`` and speaks about the JSON it gets back.

    ACME_CRM_TOKEN=secret python examples/webhook_tool_server.py 8088
    # then in w3sipagent.toml: url = "http://127.0.0.1:8088/tools/lookup_order"
"""

from __future__ import annotations

import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = {"4217": {"status": "shipped", "eta": "tomorrow"}, "4218": {"status": "packing"}}
TOKEN = os.environ.get("ACME_CRM_TOKEN", "")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/tools/lookup_order":
            return self.reply(404, {"error": "no such tool"})
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if TOKEN and not hmac.compare_digest(given, TOKEN):
            return self.reply(401, {"error": "bad token"})
        length = int(self.headers.get("Content-Length") or 0)
        try:
            args = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.reply(400, {"error": "arguments are not JSON"})
        order = str(args.get("order", "")).strip()
        found = ORDERS.get(order)
        if found is None:
            return self.reply(200, {"found": False, "order": order})
        return self.reply(200, {"found": True, "order": order, **found})

    def reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8088), Handler
    )
    port = server.server_address[1]
    print(f"lookup_order tool on http://127.0.0.1:{port}/tools/lookup_order", flush=True)
    server.serve_forever()
