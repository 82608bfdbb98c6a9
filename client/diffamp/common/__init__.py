"""What the client and the server both need, with no grpc and no I/O: defaults and limits, seed derivation,
detectors, statistics, and the sweep's record and summary types.

The server (diffamp_server) imports this package and the generated stubs, and nothing else of `diffamp`.
"""
