"""Orchard's HTTP API (``orchard api``): OpenAI-compatible chat completions and Orchard's own
routes, made by :func:`create_app` over the use cases; :func:`serve` runs it with uvicorn."""

from orchard.api.app import create_app
from orchard.api.openai_wire import MODELS
from orchard.api.serve import serve

__all__ = ["MODELS", "create_app", "serve"]
