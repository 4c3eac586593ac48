"""Starts moto server on 127.0.0.1 on a free port, prints the port, and serves until its stdin
closes. The Rust harness holds the other end of stdin, so the server stops when the test process
exits, however it exits.

Requests are applied one at a time: moto's backends have no locking, so two concurrent
conditional writes could both pass their condition, while DynamoDB applies conditional writes to
an item atomically. Connections stay concurrent (a thread each); only the backend work is
serialized, which is what the idempotency tests need to be meaningful."""

import sys
import threading

from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


class Serialized:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Materialize the body inside the lock: the backend work may be lazy.
            return list(self.app(environ, start_response))


def main() -> None:
    app = Serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
