"""The hub's soak: many subscribers, a long steady stream of publications, on
each broker, with the nodes' memory and file descriptors sampled every second.

``python -m soak`` (``make soak``) runs it; see ``soak/README.md``.
"""

__all__: list[str] = []
