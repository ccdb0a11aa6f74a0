"""Models in: `LoadedModel` and cards at the bottom, one module per model format, nothing named by a file is run.

May import: errors, limits, io. Never cam, policy, request or anything above.
"""
