"""Trio helpers shared by the network adapter, the services and the interfaces.

- :mod:`~mesh.aio.clock`: wall-clock milliseconds read through trio's clock;
- :mod:`~mesh.aio.groups`: one error out of nested exception groups.

Above the core (these import trio), below everything that runs on trio.
"""
