"""``python -m service [--host H] [--port P] [--workers N]``: serve the app with uvicorn
(with :class:`service.http.BoundedHttpProtocol`: bounded request heads and timeouts)."""

from __future__ import annotations

import argparse

import uvicorn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        http="service.http:BoundedHttpProtocol",
        host=args.host,
        port=args.port,
        workers=args.workers,
    )


if __name__ == "__main__":
    main()
