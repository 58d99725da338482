#!/usr/bin/env python3
"""Serves the repository on 127.0.0.1 for the demo page (Python's http.server, nothing else).

    python3 web/serve.py [--port 8000] [--root .]      then open http://127.0.0.1:8000/web/

The page loads the module from target/… and models from models/, so the root is the repository.
Port 0 picks a free port; the first line printed is the page's address either way.

Every response carries Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy:
require-corp, which make the page cross-origin isolated (`crossOriginIsolated`): only then may it
share memory with workers, which the threaded module needs (abi/THREADS.md). --no-isolation leaves
them out (the page then runs the single-thread module and says so).
"""

import argparse
import functools
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    # .wasm must be application/wasm for streaming compilation; .mjs must be JavaScript for import.
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".slm": "application/octet-stream",
        ".jsonl": "application/jsonl",
    }

    def end_headers(self):
        # The module and the wrapper change with every build: never serve a stale one.
        self.send_header("Cache-Control", "no-cache")
        if self.server.isolated:
            # Cross-origin isolation, for shared memory (SharedArrayBuffer, the threaded module).
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            # Everything here is same-origin; saying so keeps it loadable under require-corp.
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            super().log_message(fmt, *args)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--root", default=os.path.dirname(here), help="folder to serve (default: the repository)")
    ap.add_argument("--quiet", action="store_true", help="do not log requests")
    ap.add_argument("--no-isolation", action="store_true", help="leave out the COOP/COEP headers (no shared memory: one thread)")
    args = ap.parse_args()
    handler = functools.partial(Handler, directory=args.root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.quiet = args.quiet
    server.isolated = not args.no_isolation
    server.daemon_threads = True
    print(f"serving http://127.0.0.1:{server.server_address[1]}/web/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
