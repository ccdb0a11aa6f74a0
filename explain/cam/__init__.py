"""The computation: device, hooks, methods, attention, targets, preprocessing, results and the engine.

May import: errors, limits, io, models. Knows nothing of requests, caches, policy or the page.
"""
