"""Images in and out: the `Volume` type (volume.py) at the bottom, one reader per format, `load_volume` on top.

May import: errors, quiet, limits. Never torch, models, cam or anything above.
"""
