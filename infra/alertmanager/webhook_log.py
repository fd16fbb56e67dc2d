"""A tiny Alertmanager webhook receiver for docker-compose.yml: prints every notification.

Alertmanager POSTs its webhook payload (version 4: status, alerts with labels, annotations
including ``runbook_url``) here; each alert is printed as one JSON line on stdout, so
``docker compose logs -f alert-webhook`` shows what fired and what resolved. ``GET /healthz``
answers 200 (the compose healthcheck). Standard library only: it runs in the camtopo image (or
any Python 3.8+). Replace it by a real endpoint in infra/alertmanager/alertmanager.yml.

    python webhook_log.py [--host 0.0.0.0] [--port 9095]
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    server_version = "camtopo-alert-webhook"

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n")
        else:
            self._reply(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/alerts" or not 0 < length <= MAX_BODY:
            self._reply(404 if self.path != "/alerts" else 413)
            return
        try:
            payload = json.loads(self.rfile.read(length))
            alerts = payload["alerts"]
        except (ValueError, KeyError, TypeError):
            self._reply(400, b"not an Alertmanager webhook payload\n")
            return
        for alert in alerts:
            line = {
                "status": alert.get("status"),
                "alertname": alert.get("labels", {}).get("alertname"),
                "labels": alert.get("labels", {}),
                "summary": alert.get("annotations", {}).get("summary"),
                "runbook_url": alert.get("annotations", {}).get("runbook_url"),
                "startsAt": alert.get("startsAt"),
                "receiver": payload.get("receiver"),
            }
            print(json.dumps(line, sort_keys=True), flush=True)
        self._reply(200)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per alert above is the log; no access log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"alert webhook listening on {args.host}:{args.port}/alerts", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
