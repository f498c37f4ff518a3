"""A webhook receiver for tests/it/webhooks.rs, written as a user of
latchkey's webhooks would write one: each delivery's signature is checked
with the Standard Webhooks library and its envelope read with the
CloudEvents SDK (structured mode, JSON), then recorded, one JSON line per
request, in the record file.

    python3 receiver.py PORT SECRET_FILE RECORD_FILE

A request to /_status/NNN makes every later delivery answer NNN: 503 takes
the receiver "down" (deliveries are then answered unchecked, as by a
service that is down), 204 brings it back; the record lines say what each
delivery was answered.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, JSONFormat, from_structured
from standardwebhooks import Webhook

PORT = int(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as secret_file:
    WEBHOOK = Webhook(secret_file.read().strip())
RECORD = open(sys.argv[3], "a", encoding="utf-8")
LOCK = threading.Lock()
ANSWER = [204]


def record(line):
    with LOCK:
        RECORD.write(json.dumps(line) + "\n")
        RECORD.flush()


def check(headers, body):
    """The delivery's CloudEvent, once its signature and envelope pass."""
    WEBHOOK.verify(body, headers)
    content_type = headers.get("content-type", "")
    if content_type != "application/cloudevents+json":
        raise ValueError(f"content-type {content_type!r}")
    event = from_structured(HTTPMessage(headers=headers, body=body), JSONFormat())
    if event.get_specversion() != "1.0":
        raise ValueError(f"specversion {event.get_specversion()!r}")
    if event.get_id() != headers["webhook-id"]:
        raise ValueError("the CloudEvent id is not the webhook-id")
    if not event.get_type().startswith("dev.latchkey."):
        raise ValueError(f"type {event.get_type()!r}")
    if not event.get_source() or event.get_time() is None:
        raise ValueError("no source or no time")
    if event.get_datacontenttype() != "application/json":
        raise ValueError(f"datacontenttype {event.get_datacontenttype()!r}")
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    if data.get("account") != event.get_subject():
        raise ValueError("the subject is not the data's account")
    return event, data


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/_status/"):
            ANSWER[0] = int(self.path.rsplit("/", 1)[1])
            record({"control": ANSWER[0]})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {key.lower(): value for key, value in self.headers.items()}
        status = ANSWER[0]
        if status >= 300:
            # Down: as a service that is down, it checks nothing.
            record({"down": headers.get("webhook-id"), "status": status})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            event, data = check(headers, body)
            record(
                {
                    "id": event.get_id(),
                    "type": event.get_type(),
                    "subject": event.get_subject(),
                    "seq": data["seq"],
                    "event_type": data["event_type"],
                    "timestamp": int(headers["webhook-timestamp"]),
                    "status": status,
                }
            )
        except Exception as error:  # noqa: BLE001 - every refusal is recorded
            status = 400
            record({"invalid": f"{type(error).__name__}: {error}"})
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
