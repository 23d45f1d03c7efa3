"""Built-in loopback vendor doubles: small, fast, in-memory stand-ins for the Stripe API
(`stripe.StripeDouble`) and Tryton's JSON-RPC (`tryton.TrytonDouble`), covering exactly the
calls syncmesh's connectors make and refusing every other call loudly. They serve the demo
(`syncmesh demo` when trytond and localstripe are not installed) and the saga benchmark. They
bind 127.0.0.1 only and keep everything in memory.
"""
