"""`syncmesh demo`: a realistic quote-to-cash scenario on an embedded hub, against a real Tryton
and localstripe when installed, else syncmesh's built-in loopback doubles (services/demo/run.py)."""
