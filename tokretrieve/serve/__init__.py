"""Serving an index over HTTP: a JSON search API with explanations, live updates and a results
page (`tokretrieve serve`).

`create_app(path)` builds the ASGI application (FastAPI, served by uvicorn): FastAPI because it
validates requests from type hints, writes the OpenAPI schema itself and runs plain functions in
a thread pool, so the numba kernel (which releases the GIL) serves concurrent searches on all
cores. `state` keeps the searchers of the newest committed generation, `batching` groups
concurrent model queries into one model call, `static/` holds the results page.
"""

from tokretrieve.serve.app import Limits, create_app

__all__ = ["Limits", "create_app"]
