"""The OpenAI-compatible HTTP face of the gateway (Starlette on uvicorn, in the gateway's event loop).

One job per module: `schemas` parses request bodies, `names` turns model names into alphas, `translate` maps
requests to the domain's GenerateInput and events to OpenAI objects, `errors` maps domain errors to OpenAI
error bodies and HTTP codes, `app` routes, authenticates and streams, `server` runs uvicorn. Every rule on
the values themselves stays in request.py and the gateway, shared with gRPC.
"""
