"""The ASGI side of authapi, in one place: :func:`serving.serve` (the fast path for the
service's own paths), its handler (:mod:`.handler`), the threads it lends
(:mod:`.threads`), the request limits (:mod:`.limits`), lifespan (:mod:`.lifespan`) and
the per-request metrics (:mod:`.instrument`).

Nothing else in ``authapi`` imports from here, and nothing here imports ``schemas`` or
``store``: a project that never calls ``serve()`` never loads this package.
"""
