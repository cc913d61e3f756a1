"""Use cases between the routers and the Prefect gateway.

A router parses the request and returns what a use case answers; a use case does
the work (submit a simulation, stop, delete, read a job's files, change a state
for an operator) through :class:`api.gateway.PrefectGateway` and the Prefect-free
``core`` package, and answers the typed models of :mod:`api.responses`.
"""
