"""Starts moto server on 127.0.0.1 on a free port, prints the port, and serves until its stdin
closes. The Rust harness holds the other end of stdin, so the server stops when the test process
exits, however it exits."""

import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
