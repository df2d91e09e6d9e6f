"""A local RealtimeKit-compatible server for demos, tests and rehearsals (a product feature).

Imports ``core`` only, so its model of the API never borrows the client's assumptions.
"""
