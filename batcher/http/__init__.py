"""The I/O edge toward the API: the client, the pacer and its gates, the token's shared budget.

The only package that touches aiohttp (and, for the budget, its own SQLite file). Imports ``core`` only.
"""
