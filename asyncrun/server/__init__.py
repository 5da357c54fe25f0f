"""The reference backend: service layer, stores and the ASGI app.

Importing :mod:`asyncrun.server` needs only the core dependencies; the ASGI app in
:mod:`asyncrun.server._app` needs the ``server`` extra (Starlette and uvicorn).
"""
