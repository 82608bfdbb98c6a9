"""The OpenAI-compatible HTTP face of the gateway (Starlette on uvicorn, in the gateway's event loop).

One job per module: `schemas` are the request bodies and `body` parses one, `names` turns model names into
alphas, `translate` maps requests to the domain's GenerateInput, `output` maps the gateway's events to OpenAI
objects, `token_bytes` gives a token's raw bytes, `errors` maps domain errors to OpenAI error bodies and HTTP
codes, `auth` checks the bearer token, `sse` streams events and notices clients that leave, `call_middleware`
counts and logs each request as interceptors.py does an RPC, `app` routes, `server` runs uvicorn. Every rule
on the values themselves stays in request.py and the gateway, shared with gRPC.
"""
